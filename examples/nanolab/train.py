"""nanolab: a small byte-level GPT trained for a fixed time budget. The file proposers edit.

Everything here is fair game: the model, the optimizer, the schedule, the
hyperparameters below.  What is fixed lives in prepare.py (data, evaluation,
the time budget, the sequence length).  Training ends by saving the weights
and ``model_config()`` (``prepare.save_artifacts``); agentdeck's protected
evaluation (``python prepare.py evaluate``) rebuilds the model with
``build_model(config)`` from this file, loads the weights and measures
``val_bpb`` on held-out text (lower is better).  The summary this script
prints (its own ``val_bpb`` on the public split) is only its claim.

NANOLAB_TINY=1 shrinks the model and batch for a CPU smoke run; everything
else is unchanged.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from prepare import (MAX_SEQ_LEN, TIME_BUDGET, TINY, VOCAB_SIZE, evaluate_bpb, get_batch, load_data, save_artifacts,
                     training_clock)

# ---------------------------------------------------------------------------- hyperparameters
DEPTH = 8  # transformer blocks
WIDTH = 512  # model dimension
HEADS = 8  # attention heads (WIDTH must divide by it)
MLP_RATIO = 4  # hidden size of the MLP, as a multiple of WIDTH
BATCH_SIZE = 128  # sequences per step
LR = 2e-3  # peak learning rate (AdamW)
MIN_LR_FRAC = 0.1  # the learning rate at the end, as a fraction of LR
WARMUP_STEPS = 50
WARMDOWN_FRAC = 0.4  # the last fraction of the time budget decays the learning rate
WEIGHT_DECAY = 0.1
BETA1 = 0.9
BETA2 = 0.95
GRAD_CLIP = 1.0
INIT_STD = 0.02
_SEED = 1337  # kept fixed: a lucky seed is not research

if TINY:  # a CPU smoke run: same code, a model that trains in seconds
    DEPTH, WIDTH, HEADS, BATCH_SIZE = min(DEPTH, 2), max(32, WIDTH // 8), min(HEADS, 4), min(BATCH_SIZE, 16)


# ---------------------------------------------------------------------------- the model
class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, mlp_ratio * width, bias=False)
        self.out = nn.Linear(mlp_ratio * width, width, bias=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, depth: int, width: int, heads: int, mlp_ratio: int, vocab_size: int, max_seq_len: int):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(max_seq_len, width)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tok.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = INIT_STD / math.sqrt(2 * depth) if name.endswith(("proj.weight", "out.weight")) else INIT_STD
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx):
        t = idx.size(1)
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def model_config() -> dict:
    """What build_model() needs to rebuild this model: saved beside the weights (config.json)."""
    return {"depth": DEPTH, "width": WIDTH, "heads": HEADS, "mlp_ratio": MLP_RATIO, "vocab_size": VOCAB_SIZE,
            "max_seq_len": MAX_SEQ_LEN}


def build_model(config: dict) -> nn.Module:
    """The model the evaluation loads the saved weights into (``model(idx)`` -> logits (b, t, 256))."""
    return GPT(**config)


def lr_at(step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / max(1, WARMUP_STEPS))
    if progress < 1.0 - WARMDOWN_FRAC:
        decay = 1.0
    else:
        left = max(0.0, 1.0 - progress) / max(1e-9, WARMDOWN_FRAC)
        decay = MIN_LR_FRAC + (1.0 - MIN_LR_FRAC) * left
    return LR * warm * decay


def peak_flops(device) -> float:
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for key, flops in (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L40", 181e12), ("4090", 165e12)):
        if key in name:
            return flops
    return 0.0


def main() -> None:
    t_start = time.time()
    torch.manual_seed(_SEED)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    train, val = load_data(device)
    config = model_config()
    model = build_model(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR, betas=(BETA1, BETA2), fused=device.type == "cuda",
    )
    gen = torch.Generator(device=device)
    gen.manual_seed(_SEED)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    clock = training_clock()  # wall time (or CPU time for benchmarks on a shared CPU: prepare.py)
    step, tokens, train_time = 0, 0, 0.0
    t0 = None
    loss_value = float("nan")
    while True:
        x, y = get_batch(train, BATCH_SIZE, MAX_SEQ_LEN, gen)
        progress = train_time / TIME_BUDGET
        for group in opt.param_groups:
            group["lr"] = lr_at(step, progress)
        with torch.autocast(**amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, VOCAB_SIZE), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if GRAD_CLIP > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        step += 1
        tokens += x.numel()
        if step == 1 or step % 10 == 0 or device.type != "cuda":  # GPU: sync only every 10 steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = clock()
            if t0 is None:  # the first step (allocation, kernel selection) does not count
                t0, tokens, step = now, 0, 0
                continue
            train_time = now - t0
            if step % 100 == 0:
                loss_value = float(loss)
                print(f"step {step} loss {loss_value:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                      f"time {train_time:.1f}s", flush=True)
            if train_time >= TIME_BUDGET:
                break

    val_bpb = evaluate_bpb(model, val)  # on the public split: the job's claim, not the metric
    save_artifacts(model, config)  # what agentdeck's protected evaluation measures
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    flops_per_token = 6 * n_params + 12 * DEPTH * WIDTH * MAX_SEQ_LEN
    peak = peak_flops(device)
    mfu = 100.0 * flops_per_token * tokens / train_time / peak if peak and train_time else 0.0
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {train_time:.1f}")
    print(f"total_seconds:    {time.time() - t_start:.1f}")
    print(f"peak_vram_mb:     {peak_mb:.1f}")
    print(f"mfu_percent:      {mfu:.2f}")
    print(f"total_tokens_M:   {tokens / 1e6:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {n_params / 1e6:.1f}")
    print(f"depth:            {DEPTH}")


if __name__ == "__main__":
    main()
