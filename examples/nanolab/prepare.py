"""nanolab: fixed data, fixed evaluation. Protected: a trial that changes this file is rejected.

The text is generated, not downloaded: a small deterministic grammar (stories,
dialogue, counting and spelled-out arithmetic) driven by its own xorshift
generator, so it is byte-for-byte identical on every machine and Python
version, with no network.  Tokens are bytes (vocabulary 256), so the
evaluation's bits per token *are* bits per byte: ``val_bpb``.

Two roles, two processes:

* **training data** (``train.py`` imports ``load_data``): the training text and a
  public validation split, from a public seed.  Anyone can rebuild them; the
  job's own ``val_bpb`` on the public split is only its *claim*.
* **the protected evaluation** (``python prepare.py evaluate``, agentdeck's
  ``[research] eval_command``): loads the weights and config the job saved in
  ``$AGENTDECK_ARTIFACT_DIR`` into the model class of the trial's ``train.py``,
  and measures ``val_bpb`` on *held-out* text generated from
  ``$AGENTDECK_EVAL_SEED`` — a secret agentdeck keeps where the job's sandbox
  cannot see it, so the job cannot rebuild the held-out text.  The model code
  is untrusted: it runs in a child process (``serve-model``) that never sees
  the seed (this process makes itself non-dumpable, so the child cannot read
  the seed from ``/proc``); this process computes the loss from the logits the
  child returns, and first runs a **causality probe**: the log-probabilities at
  position t must not change when the tokens after t change.  A model that
  reads its targets (``is_causal=False``, a peek at ``idx[:, t+1]``) is
  rejected: the evaluation exits 3 with the reason, and the trial is a crash.

Run ``python prepare.py`` once to build the cache (it prints the data's
SHA-256); ``train.py`` imports what it needs from here.

Environment:
  NANOLAB_TINY=1         a tiny dataset and evaluation for CPU smoke runs (seconds)
  NANOLAB_CACHE=DIR      where the training data is cached (default ~/.cache/agentdeck-nanolab; a
                         sandboxed job has a private home: point this at a folder outside your home
                         that `python prepare.py` filled, or the data is rebuilt for each trial)
  AGENTDECK_BUDGET_S     the training time budget in seconds (set by agentdeck; default 300)
  NANOLAB_CPU_CLOCK=1    count the budget in this process's CPU seconds on one thread, not wall
                         time: a CPU benchmark on a shared machine then gets the same training
                         whatever else runs (bench/bench_proposers.py --lab nanolab sets it)
  AGENTDECK_ARTIFACT_DIR where train.py saves model.pt and config.json (set by agentdeck)
  AGENTDECK_EVAL_SEED    the evaluation's secret (set by agentdeck for `evaluate` only)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

# ---------------------------------------------------------------------------- fixed settings
VERSION = 1
TINY = os.environ.get("NANOLAB_TINY", "") not in ("", "0")
TIME_BUDGET = float(os.environ.get("AGENTDECK_BUDGET_S", "300"))
CPU_CLOCK = os.environ.get("NANOLAB_CPU_CLOCK", "") not in ("", "0")
VOCAB_SIZE = 256
MAX_SEQ_LEN = 64 if TINY else 512
TRAIN_BYTES = 300_000 if TINY else 24_000_000
VAL_BYTES = 16_384 if TINY else 1_048_576
HELDOUT_BYTES = VAL_BYTES
EVAL_BATCH = 16 if TINY else 64
CACHE_DIR = Path(os.environ.get("NANOLAB_CACHE") or Path.home() / ".cache" / "agentdeck-nanolab")
WEIGHTS_FILE = "model.pt"  # torch.save of a state_dict (tensors only), loaded with weights_only=True
CONFIG_FILE = "config.json"  # train.model_config(), handed to train.build_model()
PROBE_WINDOWS = 4  # windows the causality probe perturbs
PROBE_TOLERANCE = 1e-3  # nats: log-probabilities up to t may move this much when later tokens change
PUBLIC_SEED = "nanolab-public-heldout"  # used (with a warning) when AGENTDECK_EVAL_SEED is unset

def training_clock():
    """The clock the time budget is counted on: wall time, or (NANOLAB_CPU_CLOCK=1) the process's
    CPU time with torch on one thread, which other work on the machine does not shorten."""
    import time

    if not CPU_CLOCK:
        return time.time
    import torch

    torch.set_num_threads(1)
    return time.process_time


# ---------------------------------------------------------------------------- the generator


class XorShift:
    """xorshift64*: tiny, fast enough, and the same everywhere (unlike library RNGs across versions)."""

    MASK = (1 << 64) - 1

    def __init__(self, seed: int):
        self.state = (seed * 0x9E3779B97F4A7C15 + 1) & self.MASK or 1

    def next(self) -> int:
        x = self.state
        x ^= (x >> 12)
        x ^= (x << 25) & self.MASK
        x ^= (x >> 27)
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & self.MASK

    def below(self, n: int) -> int:
        return (self.next() >> 11) % n

    def pick(self, items):
        return items[self.below(len(items))]


NAMES = ("Ada", "Bram", "Cleo", "Dov", "Edda", "Finn", "Gus", "Hana", "Ivo", "Juno", "Kai", "Lena", "Milo",
         "Nora", "Otto", "Pia", "Quin", "Rosa", "Sami", "Tess", "Uma", "Vik", "Wren", "Yara", "Zeb")
ANIMALS = ("fox", "owl", "heron", "badger", "otter", "wren", "hare", "mole", "crow", "lynx", "newt", "stag",
           "moth", "toad", "vole", "seal")
PLACES = ("harbour", "orchard", "mill", "library", "market", "forest", "bridge", "tower", "meadow", "cellar",
          "lighthouse", "garden", "station", "valley", "workshop")
OBJECTS = ("lantern", "key", "map", "kettle", "compass", "ribbon", "bell", "ladder", "basket", "coin", "letter",
           "feather", "clock", "rope", "mirror", "drum", "scarf", "spoon", "candle", "book")
ADJECTIVES = ("small", "old", "bright", "quiet", "clever", "brave", "tired", "golden", "patient", "curious",
              "green", "heavy", "gentle", "odd", "cold", "kind", "restless", "silver")
VERBS = ("found", "lost", "mended", "painted", "carried", "hid", "sold", "borrowed", "dropped", "polished",
         "wrapped", "counted")
MOODS = ("happy", "puzzled", "worried", "proud", "sleepy", "surprised")
TIMES = ("At dawn", "Before noon", "In the evening", "Late at night", "On Sunday", "After the rain")
ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def spell(n: int) -> str:
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + spell(n % 100))


def _sentence(r: XorShift, cast: list[str]) -> str:
    a, b = r.pick(cast), r.pick(cast)
    kind = r.below(9)
    if kind == 0:
        return f"{a} the {r.pick(ADJECTIVES)} {r.pick(ANIMALS)} went to the {r.pick(PLACES)} to find a {r.pick(OBJECTS)}."
    if kind == 1:
        return f"In the {r.pick(PLACES)}, {a} met {b}, who carried a {r.pick(ADJECTIVES)} {r.pick(OBJECTS)}."
    if kind == 2:
        x, y = r.below(60), r.below(40)
        return f"{a} said that {spell(x)} plus {spell(y)} is {spell(x + y)}."
    if kind == 3:
        x, y = r.below(12), r.below(12)
        return f"\"What is {spell(x)} times {spell(y)}?\" asked {a}. \"It is {spell(x * y)},\" said {b}."
    if kind == 4:
        n = 3 + r.below(6)
        start = r.below(20)
        return f"{a} counted the {r.pick(OBJECTS)}s: " + ", ".join(spell(start + i) for i in range(n)) + "."
    if kind == 5:
        obj = r.pick(OBJECTS)
        return f"{r.pick(TIMES)}, {a} {r.pick(VERBS)} the {obj}, and {b} {r.pick(VERBS)} it again."
    if kind == 6:
        return f"{a} felt {r.pick(MOODS)}, because the {r.pick(OBJECTS)} in the {r.pick(PLACES)} was {r.pick(ADJECTIVES)}."
    if kind == 7:
        word = r.pick(OBJECTS)
        return f"\"{word.capitalize()}\" is spelled {'-'.join(word.upper())}, said {a}."
    return f"{a} and {b} walked from the {r.pick(PLACES)} to the {r.pick(PLACES)} and back."


def paragraph(r: XorShift, number: int) -> str:
    cast = [r.pick(NAMES) for _ in range(2 + r.below(3))]
    lines = [_sentence(r, cast) for _ in range(3 + r.below(6))]
    head = f"Chapter {spell(number % 200)}.\n" if number % 25 == 0 else ""
    return head + " ".join(lines) + "\n\n"


def generate(train_bytes: int, val_bytes: int) -> tuple[bytes, bytes]:
    """Train and validation text: every 20th paragraph goes to validation (same distribution)."""
    r = XorShift(20241126)
    train, val = [], []
    n_train = n_val = 0
    number = 0
    while n_train < train_bytes or n_val < val_bytes:
        text = paragraph(r, number)
        if number % 20 == 19:
            if n_val < val_bytes:
                val.append(text)
                n_val += len(text)
        elif n_train < train_bytes:
            train.append(text)
            n_train += len(text)
        number += 1
    return "".join(train).encode()[:train_bytes], "".join(val).encode()[:val_bytes]


def data_paths() -> tuple[Path, Path]:
    key = f"v{VERSION}-{TRAIN_BYTES}-{VAL_BYTES}"
    return CACHE_DIR / f"train-{key}.bin", CACHE_DIR / f"val-{key}.bin"


def ensure_data() -> tuple[Path, Path]:
    global CACHE_DIR
    train_path, val_path = data_paths()
    if not (train_path.exists() and val_path.exists()):
        train, val = generate(TRAIN_BYTES, VAL_BYTES)
        try:
            _write_cache(train, val)
        except OSError:  # a read-only cache (a sandboxed job): build it in the private temp folder
            import tempfile

            CACHE_DIR = Path(tempfile.gettempdir()) / "agentdeck-nanolab"
            _write_cache(train, val)
            train_path, val_path = data_paths()
    return train_path, val_path


def _write_cache(train: bytes, val: bytes) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for path, blob in zip(data_paths(), (train, val)):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)  # several trials may generate at once: last one wins, same bytes


def heldout_text(seed: str, n_bytes: int = HELDOUT_BYTES) -> bytes:
    """Held-out text: the same grammar from a generator seeded by *seed* (the evaluation's secret)."""
    r = XorShift(int.from_bytes(hashlib.sha256(f"nanolab-heldout:{seed}".encode()).digest()[:8], "big"))
    out, size, number = [], 0, 0
    while size < n_bytes:
        text = paragraph(r, number)
        out.append(text)
        size += len(text)
        number += 1
    return "".join(out).encode()[:n_bytes]


# ---------------------------------------------------------------------------- torch side


def load_data(device):
    """(train, val) as uint8 tensors on *device* (val: the public split, for the job's own claim)."""
    import torch

    train_path, val_path = ensure_data()
    train = torch.frombuffer(bytearray(train_path.read_bytes()), dtype=torch.uint8).to(device)
    val = torch.frombuffer(bytearray(val_path.read_bytes()), dtype=torch.uint8).to(device)
    return train, val


def get_batch(data, batch_size: int, seq_len: int, generator=None):
    """Random windows of *data*: inputs and next-byte targets, (batch, seq_len) int64 each."""
    import torch

    hi = data.numel() - seq_len - 1
    starts = torch.randint(0, hi, (batch_size,), device=data.device, generator=generator)
    idx = starts[:, None] + torch.arange(seq_len + 1, device=data.device)[None, :]
    chunk = data[idx].long()
    return chunk[:, :-1], chunk[:, 1:]


def evaluate_bpb(model, val, seq_len: int = MAX_SEQ_LEN, batch_size: int = EVAL_BATCH) -> float:
    """Bits per byte of *model* on *val* (every byte predicted once): the job's own estimate.

    ``model(idx)`` must return logits of shape (batch, seq, 256).
    """
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    n = (val.numel() - 1) // seq_len
    total_nats = 0.0
    total = 0
    device_type = val.device.type
    with torch.no_grad():
        for i in range(0, n, batch_size):
            rows = range(i, min(n, i + batch_size))
            idx = torch.stack([val[r * seq_len: r * seq_len + seq_len + 1] for r in rows]).long()
            x, y = idx[:, :-1], idx[:, 1:]
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=device_type == "cuda"):
                logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
            total_nats += float(loss)
            total += y.numel()
    if was_training:
        model.train()
    return total_nats / total / math.log(2)


def save_artifacts(model, config: dict) -> Path | None:
    """What the protected evaluation loads: the weights (a state_dict of tensors, on the CPU) and
    the model's config, in ``$AGENTDECK_ARTIFACT_DIR``.  None when that is unset (a manual run)."""
    import torch

    folder = os.environ.get("AGENTDECK_ARTIFACT_DIR")
    if not folder:
        return None
    out = Path(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


# ---------------------------------------------------------------------------- the protected evaluation


class Rejected(Exception):
    """The model is refused (the reason is printed; the evaluation exits 3)."""


def _send(stream, blob: bytes) -> None:
    stream.write(struct.pack("<Q", len(blob)))
    stream.write(blob)
    stream.flush()


def _recv(stream) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    blob = stream.read(size)
    if len(blob) < size:
        return None
    return blob


def _tensor_bytes(tensor) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(tensor, buf)
    return buf.getvalue()


def _tensor_from(blob: bytes):
    import io

    import torch

    return torch.load(io.BytesIO(blob), weights_only=True)  # tensors only: never a pickle of objects


def serve_model() -> int:
    """The child: build the trial's model from ``train.py`` with the saved weights, and answer
    requests (a batch of byte windows) with their logits.  Its code is untrusted; it never sees
    the held-out seed, and nothing it prints reaches the trial's log."""
    import torch

    replies = os.fdopen(os.dup(1), "wb")  # the replies' own descriptor; fd 1 (print) goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import train  # the trial's editable file (its main() runs only as a script)

    folder = Path(os.environ["AGENTDECK_ARTIFACT_DIR"])
    config = json.loads((folder / CONFIG_FILE).read_text())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = train.build_model(config)
    state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.to(device).eval()
    stdin, stdout = sys.stdin.buffer, replies
    while True:
        blob = _recv(stdin)
        if not blob:
            return 0
        idx = _tensor_from(blob).to(device)
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                             enabled=device.type == "cuda"):
            logits = model(idx)
        _send(stdout, _tensor_bytes(logits.float().cpu()))


class _Model:
    """The parent's side of the child: logits for a batch, checked for shape and finiteness."""

    def __init__(self, env: dict[str, str]):
        import tempfile

        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve-model"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)

    def logits(self, idx, dtype=None):
        import torch

        try:
            _send(self.proc.stdin, _tensor_bytes(idx.cpu()))
            blob = _recv(self.proc.stdout)
        except (BrokenPipeError, OSError):
            blob = None
        if blob is None:
            raise Rejected(f"the model could not be loaded or run: {self.error_tail()}")
        try:
            out = _tensor_from(blob)
        except Exception as exc:  # noqa: BLE001 - whatever the child sent, it is not logits
            raise Rejected(f"the model's process answered something that is not a tensor ({exc})"[:300]) from None
        b, t = idx.shape
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (b, t, VOCAB_SIZE):
            raise Rejected(f"model(idx) must return logits of shape ({b}, {t}, {VOCAB_SIZE}); "
                           f"got {tuple(getattr(out, 'shape', ())) or type(out).__name__}")
        out = out.to(dtype or torch.float32)
        if not torch.isfinite(out).all():
            raise Rejected("the model returned nan or inf logits")
        return out

    def error_tail(self) -> str:
        self.proc.wait(timeout=30)
        self.errors.seek(0)
        lines = [line for line in self.errors.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return (lines[-1].strip()[:300] if lines else f"exit {self.proc.returncode}")

    def close(self) -> None:
        try:
            _send(self.proc.stdin, b"")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _non_dumpable() -> None:
    """Keep other processes of the same user (the model's child) from reading this one's memory
    and environment through /proc (where the seed is)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def causality_probe(model, windows, rng) -> None:
    """Log-probabilities at positions <= t must not move when the tokens after t change."""
    import torch

    n = windows.size(0)
    picks = [rng.below(n) for _ in range(min(PROBE_WINDOWS, n))]
    rows, perturbed, cuts = [], [], []
    for k, i in enumerate(picks):
        t = MAX_SEQ_LEN // 4 + rng.below(MAX_SEQ_LEN // 2)
        other = windows[(i + 1 + rng.below(n - 1)) % n] if n > 1 else windows[i].flip(0)
        row = windows[i, :-1]
        fake = torch.cat([row[: t + 1], other[t + 1: MAX_SEQ_LEN]])
        if torch.equal(fake, row):
            fake[t + 1:] = (row[t + 1:] + 1) % VOCAB_SIZE
        rows.append(row)
        perturbed.append(fake)
        cuts.append(t)
    logp = torch.log_softmax(model.logits(torch.stack(rows + perturbed), torch.float64), dim=-1)
    m = len(rows)
    for k, t in enumerate(cuts):
        moved = (logp[k, : t + 1] - logp[m + k, : t + 1]).abs().max().item()
        if moved > PROBE_TOLERANCE:
            raise Rejected(f"causality probe failed: changing the tokens after position {t} moved the "
                           f"log-probabilities up to position {t} by {moved:.3g} nats; the model reads "
                           f"later tokens (its targets), e.g. attention without is_causal=True")


def evaluate() -> int:
    """``python prepare.py evaluate``: val_bpb of the saved model on the held-out text."""
    seed = os.environ.pop("AGENTDECK_EVAL_SEED", "")
    _non_dumpable()
    folder = os.environ.get("AGENTDECK_ARTIFACT_DIR", "")
    if not folder or not (Path(folder) / WEIGHTS_FILE).is_file() or not (Path(folder) / CONFIG_FILE).is_file():
        print(f"evaluation: no {WEIGHTS_FILE} and {CONFIG_FILE} in AGENTDECK_ARTIFACT_DIR ({folder or 'unset'}); "
              "train.py must call prepare.save_artifacts(model, model_config())")
        return 3
    if not seed:
        print("evaluation: AGENTDECK_EVAL_SEED is unset: the held-out text is the public one (a manual run)",
              file=sys.stderr)
        seed = PUBLIC_SEED
    env = {k: v for k, v in os.environ.items() if k != "AGENTDECK_EVAL_SEED"}
    model = _Model(env)  # starts loading torch and the model while this process builds the text
    try:
        import torch

        text = heldout_text(seed)
        data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
        n = (data.numel() - 1) // MAX_SEQ_LEN
        windows = torch.stack([data[r * MAX_SEQ_LEN: r * MAX_SEQ_LEN + MAX_SEQ_LEN + 1] for r in range(n)])
        causality_probe(model, windows, XorShift(int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16)))
        total_nats, total = 0.0, 0
        for i in range(0, n, EVAL_BATCH):
            batch = windows[i: i + EVAL_BATCH]
            x, y = batch[:, :-1], batch[:, 1:]
            logp = torch.log_softmax(model.logits(x), dim=-1)
            total_nats -= float(logp.gather(-1, y.unsqueeze(-1)).sum())
            total += y.numel()
    except Rejected as exc:
        print(f"evaluation rejected the model: {exc}")
        return 3
    finally:
        model.close()
    print("---")
    print(f"val_bpb:          {total_nats / total / math.log(2):.6f}")
    print(f"eval_tokens:      {total}")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "evaluate":
        return evaluate()
    if len(sys.argv) > 1 and sys.argv[1] == "serve-model":
        return serve_model()
    train_path, val_path = ensure_data()
    for path in (train_path, val_path):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path.name}: {path.stat().st_size} bytes, sha256 {digest}")
    sample = train_path.read_bytes()[:300].decode()
    print("---\n" + sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
