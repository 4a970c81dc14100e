"""A seccomp filter for sandboxed agents: no set-id files, no terminal injection.

Two things a ``bwrap`` agent could otherwise do, both measured:

- **Set-id files on the host.**  When agentdeck runs as root, the sandbox's
  user namespace maps the agent's uid to root outside, so a file the agent
  creates in its worktree is owned by root on the host; ``cp /bin/sh x;
  chmod u+s x`` left a setuid-root program in the worktree (the sandbox's own
  mounts are ``nosuid``; the host's are not), a way up for any local user
  who can reach it.  The filter refuses (``EPERM``) ``chmod``/``fchmod``/
  ``fchmodat``/``fchmodat2`` and ``mknod``/``mknodat`` with a set-uid or set-gid
  bit, and ``open``/``openat``/``creat`` creating a file with one;
  ``openat2`` (its mode is behind a pointer) answers ``ENOSYS``, so the C
  library falls back to ``openat``; ``io_uring_setup`` (opens without system calls) too.
- **Typing into the pane.**  The sandbox keeps the pane's terminal (a TUI needs
  it), so ``TIOCSTI`` (push characters into the terminal's input) and
  ``TIOCLINUX`` are refused.

Other architectures' system calls (32-bit, x32) are refused outright.  :func:`program`
returns the classic-BPF program bubblewrap's ``--seccomp FD`` reads; None on an
architecture this module does not know (the sandbox then runs without it).
"""

from __future__ import annotations

import platform
import struct

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
EPERM = 1
ENOSYS = 38
SETID = 0o6000
O_CREAT = 0o100
O_TMPFILE = 0o20000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
X32_BIT = 0x40000000

#: arch: (AUDIT_ARCH, {syscall: (kind, argument index)})
#: kinds: "mode" (the argument is a mode), "open" (flags at i, mode at i+1), "nosys", "ioctl".
ARCHES: dict[str, tuple[int, dict[int, tuple[str, int]]]] = {
    "x86_64": (0xC000003E, {
        2: ("open", 1), 257: ("open", 2), 85: ("mode", 1), 90: ("mode", 1), 91: ("mode", 1),
        268: ("mode", 2), 452: ("mode", 2), 133: ("mode", 1), 259: ("mode", 2),
        437: ("nosys", 0), 425: ("nosys", 0), 16: ("ioctl", 1),
    }),
    "aarch64": (0xC00000B7, {
        56: ("open", 2), 52: ("mode", 1), 53: ("mode", 2), 452: ("mode", 2), 33: ("mode", 2),
        437: ("nosys", 0), 425: ("nosys", 0), 29: ("ioctl", 1),
    }),
}


def _arg(i: int) -> int:
    return 16 + 8 * i  # the low 32 bits of args[i] (little-endian)


def program(machine: str | None = None) -> bytes | None:
    """The filter for *machine* (default: this one), as bubblewrap reads it; None if unknown."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        return None
    audit_arch, table = ARCHES[machine]
    # Assembled with symbolic jumps: ("jeq"|"jset", k, true_label, false_label).
    code: list[tuple] = [
        ("ld", 4), ("jeq", audit_arch, "native", "deny"),
        ("label", "native"), ("ld", 0),
    ]
    if machine == "x86_64":
        code += [("jset", X32_BIT, "deny", "next0"), ("label", "next0")]
    for n, (nr, (kind, i)) in enumerate(sorted(table.items())):
        here, after = f"sys{n}", f"after{n}"
        code += [("jeq", nr, here, after), ("label", here)]
        if kind == "nosys":
            code += [("ret", _ERRNO | ENOSYS)]
        elif kind == "ioctl":
            code += [("ld", _arg(i)), ("jeq", TIOCSTI, "deny", f"i{n}"), ("label", f"i{n}"),
                     ("jeq", TIOCLINUX, "deny", "allow")]
        elif kind == "mode":
            code += [("ld", _arg(i)), ("jset", SETID, "deny", "allow")]
        elif kind == "open":
            code += [("ld", _arg(i)), ("jset", O_CREAT | O_TMPFILE, f"c{n}", "allow"), ("label", f"c{n}"),
                     ("ld", _arg(i + 1)), ("jset", SETID, "deny", "allow")]
        code += [("label", after)]
    code += [("label", "allow"), ("ret", _ALLOW), ("label", "deny"), ("ret", _ERRNO | EPERM)]
    # Resolve labels to instruction indexes.
    labels: dict[str, int] = {}
    pos = 0
    for ins in code:
        if ins[0] == "label":
            labels[ins[1]] = pos
        else:
            pos += 1
    out = []
    pos = 0
    for ins in code:
        op = ins[0]
        if op == "label":
            continue
        if op == "ld":
            out.append(struct.pack("<HBBI", _LD_W_ABS, 0, 0, ins[1]))
        elif op == "ret":
            out.append(struct.pack("<HBBI", _RET_K, 0, 0, ins[1]))
        else:
            jt, jf = labels[ins[2]] - pos - 1, labels[ins[3]] - pos - 1
            if not (0 <= jt < 256 and 0 <= jf < 256):
                raise ValueError("seccomp program jump out of range")
            out.append(struct.pack("<HBBI", _JEQ_K if op == "jeq" else _JSET_K, jt, jf, ins[1]))
        pos += 1
    return b"".join(out)
