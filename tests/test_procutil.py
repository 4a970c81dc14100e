"""agentdeck.procutil: is a process still running, and still the same one (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from support import retry_until

from agentdeck.procutil import pid_alive, proc_stat, process_gone, process_identity, start_time


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_running_process_is_alive_only_with_its_own_start_time():
    me = os.getpid()
    assert start_time(me) and proc_stat(me) is not None
    assert pid_alive(me) and pid_alive(me, start_time(me))
    assert not pid_alive(me, "1")  # a recycled pid: another start time is another process
    for nothing in (None, 0, -1, "123", True):
        assert not pid_alive(nothing)


def test_a_killed_child_is_gone_before_and_after_it_is_reaped():
    child = _sleeper()
    try:
        ident = process_identity(child.pid)
        assert ident["start"] == start_time(child.pid) and ident["host"]
        assert pid_alive(child.pid, str(ident["start"])) and not process_gone(ident)
        os.kill(child.pid, signal.SIGKILL)
        # Not reaped yet: a zombie, which neither check takes for a running process.
        retry_until(lambda: (proc_stat(child.pid) or ("?", ""))[0] == "Z", timeout=10)
        assert not pid_alive(child.pid) and process_gone(ident)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid) and process_gone(ident)


def test_process_gone_never_declares_an_unknown_process_dead():
    me = process_identity()
    assert not process_gone(me)
    assert process_gone(dict(me, start="1"))  # this pid is another process now
    assert not process_gone(dict(me, start="1", host=me["host"] + "-elsewhere"))  # another host: unknown
    assert not process_gone(dict(me, start="1", pidns="pid:[0]"))  # another pid namespace: unknown
    assert not process_gone({"pid": "x"}) and not process_gone({})
