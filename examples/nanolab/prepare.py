"""nanolab: fixed data, fixed evaluation. Protected: a trial that changes this file is rejected.

The text is generated, not downloaded: a small deterministic grammar (stories,
dialogue, counting and spelled-out arithmetic) driven by its own xorshift
generator, so it is byte-for-byte identical on every machine and Python
version, with no network.  Tokens are bytes (vocabulary 256), so the
evaluation's bits per token *are* bits per byte: ``val_bpb``.

Run ``python prepare.py`` once to build the cache (it prints the data's
SHA-256); ``train.py`` imports what it needs from here.

Environment:
  NANOLAB_TINY=1       a tiny dataset and evaluation for CPU smoke runs (seconds)
  NANOLAB_CACHE=DIR    where the generated data is cached (default ~/.cache/agentdeck-nanolab)
  AGENTDECK_BUDGET_S   the training time budget in seconds (set by agentdeck; default 300)
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path

# ---------------------------------------------------------------------------- fixed settings
VERSION = 1
TINY = os.environ.get("NANOLAB_TINY", "") not in ("", "0")
TIME_BUDGET = float(os.environ.get("AGENTDECK_BUDGET_S", "300"))
VOCAB_SIZE = 256
MAX_SEQ_LEN = 64 if TINY else 512
TRAIN_BYTES = 300_000 if TINY else 24_000_000
VAL_BYTES = 16_384 if TINY else 1_048_576
EVAL_BATCH = 16 if TINY else 64
CACHE_DIR = Path(os.environ.get("NANOLAB_CACHE") or Path.home() / ".cache" / "agentdeck-nanolab")

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
    train_path, val_path = data_paths()
    if not (train_path.exists() and val_path.exists()):
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        train, val = generate(TRAIN_BYTES, VAL_BYTES)
        for path, blob in ((train_path, train), (val_path, val)):
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)  # several trials may generate at once: last one wins, same bytes
    return train_path, val_path


# ---------------------------------------------------------------------------- torch side


def load_data(device):
    """(train, val) as uint8 tensors on *device*."""
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
    """Bits per byte of *model* on the fixed validation text (every byte predicted once).

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


def main() -> int:
    train_path, val_path = ensure_data()
    for path in (train_path, val_path):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path.name}: {path.stat().st_size} bytes, sha256 {digest}")
    sample = train_path.read_bytes()[:300].decode()
    print("---\n" + sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
