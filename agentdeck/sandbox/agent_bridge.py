"""The loopback bridge of a sandboxed agent without network: host ports reached through unix sockets.

A ``bwrap`` agent with ``network = false`` has its own network namespace: its
``127.0.0.1`` is not the host's, so the warm MCP server (or a local model)
would be out of reach.  This script, run twice, joins the two loopbacks for
the named ports only::

    python3 -I -S agent_bridge.py host DIR PORT... -- bwrap ... -- \\
        python3 -I -S agent_bridge.py inside DIR PORT... -- AGENT ARGV...

``host`` (outside, the pane's process): listens on the unix socket
``DIR/PORT`` for each port and forwards each connection to the host's
``127.0.0.1:PORT``; runs the rest of its argv (bwrap) as its child, passes it
SIGTERM/SIGINT/SIGHUP, and exits with its status when it ends (the bridge
lives exactly as long as the sandbox).  ``inside`` (in the sandbox, ``DIR``
bound read-only): listens on ``127.0.0.1:PORT`` and forwards each connection
to ``DIR/PORT``, in a forked child (killed with the sandbox's pid namespace),
then executes the agent in its own place.  Standard library only; started
with ``-I -S`` (no site, no ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def _serve(listener: socket.socket, connect) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            peer = connect()
        except OSError:
            conn.close()
            continue

        def run(a: socket.socket = conn, b: socket.socket = peer) -> None:
            t = threading.Thread(target=_pump, args=(b, a), daemon=True)
            t.start()
            _pump(a, b)
            t.join()
            a.close()
            b.close()

        threading.Thread(target=run, daemon=True).start()


def _tcp(port: int):
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    return connect


def _unix(path: str):
    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s
    return connect


def _split(argv: list[str]) -> tuple[str, list[int], list[str]]:
    sep = argv.index("--")
    folder, ports = argv[0], [int(p) for p in argv[1:sep]]
    return folder, ports, argv[sep + 1:]


def host(argv: list[str]) -> int:
    folder, ports, command = _split(argv)
    listeners = []
    for port in ports:
        path = os.path.join(folder, str(port))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(64)
        listeners.append(s)
        threading.Thread(target=_serve, args=(s, _tcp(port)), daemon=True).start()
    pid = os.fork()
    if pid == 0:
        for s in listeners:
            s.close()
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    for port in ports:
        try:
            os.unlink(os.path.join(folder, str(port)))
        except OSError:
            pass
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def inside(argv: list[str]) -> int:
    folder, ports, command = _split(argv)
    listeners = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:  # the agent still starts; only this port stays out of reach
            sys.stderr.write(f"agentdeck: loopback port {port} not bridged into the sandbox: {exc}\n")
            s.close()
            continue
        s.listen(64)
        listeners.append((s, port))
    if listeners and os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.setsid()  # out of the pane's process group: ^C is the agent's, not the bridge's
        threads = [threading.Thread(target=_serve, args=(s, _unix(os.path.join(folder, str(p)))), daemon=True)
                   for s, p in listeners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        os._exit(0)
    for s, _ in listeners:
        s.close()
    os.execvp(command[0], command)
    return 127  # pragma: no cover - exec does not return


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    return host(rest) if mode == "host" else inside(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
