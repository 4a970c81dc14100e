"""The editable files' top-level numeric constants: finding, rewriting and formatting them.

``LR = 3e-4``, ``DEPTH: int = 8``, ``WARMUP = -1``: a top-level assignment of a plain number
on one line is a :class:`Constant`; ``_private`` names and names containing ``SEED`` are
skipped.  Offsets are in UTF-8 bytes, so a rewrite changes only the number's own characters
and the file keeps its formatting and comments.  The ``mutate`` proposer
(:mod:`agentdeck.research.proposers.mutate`) nudges these constants and the search space
(:mod:`agentdeck.research.space`) searches them; both read them here.
"""

from __future__ import annotations

import ast
import re
import threading
from dataclasses import dataclass
from typing import TypeGuard

SKIP_NAME = re.compile(r"seed", re.IGNORECASE)


@dataclass
class Constant:
    path: str  # relative to workdir
    name: str
    value: float | int
    start: int  # byte offsets of the number's text (sign included)
    end: int
    text: str

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int)


def _is_number(value: object) -> TypeGuard[float | int]:
    return type(value) in (int, float)  # not bool, complex or a string


def _number(node: ast.AST) -> tuple[float | int, ast.expr] | None:
    if isinstance(node, ast.Constant) and _is_number(node.value):
        return node.value, node
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and _is_number(node.operand.value)):
        value = node.operand.value
        return (-value if isinstance(node.op, ast.USub) else value), node
    return None


# CPython 3.11 can fail ``ast.parse`` in two threads at once ("AST constructor recursion depth mismatch");
# proposal workers are threads.
_AST_LOCK = threading.Lock()


def find_constants(source: str, path: str = "") -> list[Constant]:
    """Top-level ``NAME = <number>`` assignments of *source* (offsets in UTF-8 bytes)."""
    try:
        with _AST_LOCK:
            tree = ast.parse(source)
    except SyntaxError:
        return []
    data = source.encode("utf-8")
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    found = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, value_node = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            name, value_node = stmt.target.id, stmt.value
        else:
            continue
        if name.startswith("_") or SKIP_NAME.search(name):
            continue
        got = _number(value_node)
        if got is None or value_node.end_lineno != value_node.lineno:
            continue
        value, node = got
        assert node.end_lineno is not None and node.end_col_offset is not None  # ast.parse sets both
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        found.append(Constant(path, name, value, start, end, data[start:end].decode("utf-8")))
    return found


def replace_constant(source: str, const: Constant, new_text: str) -> str:
    data = source.encode("utf-8")
    return (data[: const.start] + new_text.encode("utf-8") + data[const.end:]).decode("utf-8")


def format_number(value: float | int, like: str, is_int: bool) -> str:
    if is_int:
        if "_" in like and abs(int(value)) >= 1000:
            return f"{int(value):_}"
        return str(int(value))
    v = float(f"{value:.3g}")
    if "e" in like.lower():
        mantissa, exp = f"{v:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    text = repr(v)
    if "e" in text:  # repr chose scientific for a tiny or huge number
        mantissa, exp = f"{v:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    return text
