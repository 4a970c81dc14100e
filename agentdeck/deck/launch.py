"""Starting an agent's program in its tmux pane: its environment, the launcher, the first prompt.

``LaunchOps._launch`` is the one launch path (``new``, ``fork`` and ``restart`` call
it).  The pane's first program is :data:`LAUNCHER`: it reads the agent's environment
from a 0600 file, deletes it and execs the agent, so secrets never reach a command
line, tmux's environment or (once the agent runs) the disk.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from agentdeck import paths
from agentdeck.agents import Adapter, LaunchContext
from agentdeck.mcp_link import service as mcp_service
from agentdeck.sandbox import agent_mode
from agentdeck.store import AgentRecord

from .base import DeckBase

# The environment a new agent gets is the creating process's own, minus what agentdeck (or tmux)
# sets itself and what would mislead the agent: terminal facts of the creator's terminal, its
# size, its working directory, a test's fault point, the markers of an enclosing agent session.
STRIPPED_ENV = frozenset({
    "TMUX", "TMUX_PANE", "TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLUMNS", "LINES", "PWD",
    "OLDPWD", "AGENTDECK_FAULT", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT",
    "AGENTDECK_MCP_TOKEN",  # an agent creating another never hands down its own MCP identity
})
# Set by tmux in the pane itself: the launcher keeps the pane's own values.
PANE_ENV = ("TERM", "TMUX", "TMUX_PANE", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLORTERM")
STALE_ENV_FILE_S = 600.0

# The pane's first program (`python -S`: no site start-up, standard library only): it loads the
# agent's environment from a 0600 file, deletes the file, and execs the agent.  The environment
# (API keys...) thus never appears on a command line (`ps`), in tmux's environment or on disk
# once the agent runs.  argv[1] is the file, argv[2:] the agent's argv.
LAUNCHER = """import json,os,sys
p=sys.argv[1]
try:
 with open(p) as f:d=json.load(f)
except (OSError,ValueError) as x:
 sys.stderr.write("agentdeck: cannot read the launch environment %s: %s\\n"%(p,x));sys.exit(126)
finally:
 try:os.unlink(p)
 except OSError:pass
e=d["env"]
for k in d["pane"]:
 v=os.environ.get(k)
 if v is not None:e[k]=v
a=sys.argv[2:]
try:os.execvpe(a[0],a,e)
except OSError as x:
 sys.stderr.write("agentdeck: cannot start %s: %s\\n"%(a[0],x));sys.exit(127)
"""

# The folder that holds the `agentdeck` package (this file is agentdeck/deck/launch.py).
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent


class LaunchOps(DeckBase):
    """The launch path: environment, launcher, pane, the adapter's after-launch and first prompt."""

    def _agent_env(self, rec: AgentRecord) -> dict[str, str]:
        return {
            paths.ENV_AGENT: rec.name,
            paths.ENV_WORKTREE: rec.worktree,
            paths.ENV_STATE_DIR: str(self.repo.state_dir),
            paths.ENV_REPO: str(self.repo.root),
            paths.ENV_TMUX_SOCKET: self.tmux.socket,
        }

    def launch_environment(self, rec: AgentRecord, adapter_env: dict[str, str]) -> dict[str, str]:
        """The agent's whole environment: this process's own (the CLI's or the deck's), minus
        :data:`STRIPPED_ENV`, plus the adapter's and ``[agents.X] env``, plus agentdeck's own."""
        env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
        env.update(adapter_env)
        env.update(self._agent_env(rec))
        env["PWD"] = rec.start_dir
        return env

    def _write_env_file(self, env: dict[str, str]) -> Path:
        """A 0600 file, in a 0700 folder of the state directory, read and deleted by the launcher."""
        folder = self.repo.state_dir / "launch"
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        now = time.time()
        for old in folder.glob("env-*.json"):  # a launcher that never ran (its pane was killed at once)
            try:
                if now - old.stat().st_mtime > STALE_ENV_FILE_S:
                    old.unlink()
            except OSError:
                pass
        path = folder / f"env-{secrets.token_hex(8)}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"env": env, "pane": list(PANE_ENV)}, fh)
        return path

    def _await_launcher(self, session: str, env_file: Path, timeout: float = 5.0) -> None:
        """Wait (briefly) until the pane's launcher has taken its environment file; delete the file
        when the pane died before that, so no environment stays on disk."""
        deadline = time.monotonic() + timeout
        next_pane_check = time.monotonic() + 0.2
        while env_file.exists() and time.monotonic() < deadline:
            if time.monotonic() >= next_pane_check:
                info = self.tmux.panes().get(session)
                if info is None or info.dead:
                    break
                next_pane_check = time.monotonic() + 0.2
            time.sleep(0.01)
        else:
            return
        env_file.unlink(missing_ok=True)

    @staticmethod
    def agentdeck_argv(*args: str) -> list[str]:
        """argv that runs this agentdeck (installed or from a source checkout) with *args*."""
        pkg_parent = str(_PACKAGE_PARENT)
        argv = [sys.executable, "-m", "agentdeck", *args]
        if "site-packages" in pkg_parent or "dist-packages" in pkg_parent:
            return argv
        return ["env", f"PYTHONPATH={pkg_parent}", *argv]

    @staticmethod
    def hook_argv() -> list[str]:
        """argv prefix of ``agentdeck hook``: standard library only, so ``python -S`` (no site
        start-up cost) with the package's folder on PYTHONPATH."""
        return ["env", f"PYTHONPATH={_PACKAGE_PARENT}", sys.executable, "-S", "-m", "agentdeck", "hook"]

    def _context(self, rec: AgentRecord, resume: bool) -> LaunchContext:
        return LaunchContext(
            name=rec.name, worktree=Path(rec.worktree), start_dir=Path(rec.start_dir),
            state_dir=self.repo.state_dir, repo_root=self.repo.root, prompt=rec.prompt,
            session_id=rec.session_id, resume=resume, hook_command=self.hook_argv(),
            mcp_command=self.agentdeck_argv("mcp"), extra=dict(rec.extra),
        )

    def _launch(self, rec: AgentRecord, adapter: Adapter, resume: bool) -> None:
        ctx = self._context(rec, resume)
        mcp_service.wire_launch(self, rec, adapter, ctx)  # the repository's MCP server: URL, a fresh token
        adapter.prepare(ctx)
        argv = adapter.launch_argv(ctx)
        # The agent's sandbox (issue 17: none, the CLI's own, or bubblewrap), as recorded in its row.
        plan = agent_mode.plan_for(self, rec, adapter, ctx, argv, self.launch_environment(rec, adapter.launch_env(ctx)))
        # The first prompt held until its MCP client lists the tools; the pane waits for a cold server.
        pane_cmd = mcp_service.pane_command(self, rec, adapter, ctx, plan.argv)
        env_file = self._write_env_file(plan.env)
        pane_argv = [sys.executable, "-S", "-c", LAUNCHER, str(env_file), *pane_cmd]
        try:
            if self.tmux.has_session(rec.session):
                pane = self.tmux.respawn(rec.session, Path(rec.start_dir), pane_argv)
            else:
                pane = self.tmux.new_session(rec.session, Path(rec.start_dir), pane_argv)
                # Not secret, and lets adopt.py name the agent where /proc/<pid>/environ is not readable.
                self.tmux.cmd("set-environment", "-t", f"={rec.session}", "AGENTDECK_AGENT", rec.name, check=False)
        except BaseException:
            env_file.unlink(missing_ok=True)
            raise
        self._await_launcher(rec.session, env_file)
        extra = dict(ctx.extra)
        for key in ("launching", "launcher", "launch_interrupted", "relaunching"):
            extra.pop(key, None)
        fields: dict[str, Any] = {"extra": extra}
        if ctx.session_id != rec.session_id:
            fields["session_id"] = ctx.session_id
        self.store.update_agent(rec.name, **fields)
        self.store.add_event(rec.name, "launch", "deck", detail={"argv": argv[:1], "resume": resume})
        io = self.tmux.pane_io(pane)
        updates = adapter.after_launch(ctx, io) or {}
        if "session_id" in updates:
            self.store.update_agent(rec.name, session_id=updates.pop("session_id"))
        if updates:
            self.store.merge_extra(rec.name, **updates)
        if adapter.prompt_typed_after_start(ctx):
            self._wait_ready(pane)
            adapter.submit(io, rec.prompt)

    def _wait_ready(self, pane: str, timeout: float = 10.0, still_for: float = 0.4) -> None:
        """Wait until the program has drawn something and stopped drawing for a moment."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            screen = self.tmux.capture(pane)
            if screen != last:
                last, since = screen, time.monotonic()
            elif screen.strip() and time.monotonic() - since >= still_for:
                return
            time.sleep(0.05)
