"""What every deck key does, keyed by its binding id (the ids of :data:`agentdeck.tui.bindings.KEYS`).

The main screen's bindings all run ``key('<binding id>')``: the screen asks
:func:`available` whether a key applies now (the footer shows only those) and
:func:`run` runs it, as the command palette does.  A key of the table without a
handler here (or one here not in the table) fails at import, so the table stays
the one list of keys.

Handlers that belong to a pane call it (Diff, Memory, Research); the ones that act
on agents run their engine calls through the screen's ``run_job`` (a thread worker
with that thread's Deck) and report back with messages (``ActionDone``,
``ShowText``, ``KillPlan``, ``AttachReady``) that the screen routes.  A key that
runs one job on the selected agent is registered with :func:`agent_job` (its label,
its notice, the job); a key that opens a dialog first has a handler of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from textual.message import Message
from textual.widget import Widget

from agentdeck.tui import messages as msg
from agentdeck.tui.bindings import KEYS
from agentdeck.tui.live import DiffFeed, PreviewFeed
from agentdeck.tui.model import AgentRow
from agentdeck.tui.screens.fork import ForkScreen
from agentdeck.tui.screens.help import HelpScreen
from agentdeck.tui.screens.kill import KillScreen
from agentdeck.tui.screens.new_agent import NewAgentScreen
from agentdeck.tui.screens.send import SendScreen
from agentdeck.tui.widgets.agent_list import AgentList
from agentdeck.tui.widgets.memory_pane import MemoryPane
from agentdeck.tui.widgets.research_pane import ResearchPane

W = TypeVar("W", bound=Widget)


class MainView(Protocol):
    """What a handler may use of the main screen (:class:`agentdeck.tui.main_screen.MainScreen`)."""

    rows: list[AgentRow]
    by_name: dict[str, AgentRow]
    marked: set[str]
    selected: str | None
    active_tab: str
    preview_feed: PreviewFeed
    diff_feed: DiffFeed

    @property
    def app(self) -> Any: ...
    def row(self) -> AgentRow | None: ...
    def target(self) -> str | None: ...
    def visible_rows(self) -> list[AgentRow]: ...
    def repaint(self) -> None: ...
    def poke(self) -> None: ...
    def show_tab(self, tab: str) -> None: ...
    def open_filter(self) -> None: ...
    def select_when_listed(self, name: str, tries: int = 40) -> None: ...
    def run_job(self, label: str, fn: Callable[[Any], Any], group: str = "action") -> None: ...
    def post_message(self, message: Message) -> bool: ...
    def query_one(self, _selector: type[W], /) -> W: ...


Handler = Callable[[MainView], None]
When = Callable[[MainView], bool]

HANDLERS: dict[str, Handler] = {}
WHEN: dict[str, When] = {}


def handles(binding_id: str, when: When | None = None) -> Callable[[Handler], Handler]:
    """Register the handler of *binding_id*; *when* says whether its key applies now (default:
    always, or while an agent is selected for a per-agent key)."""

    def register(fn: Handler) -> Handler:
        HANDLERS[binding_id] = fn
        if when is not None:
            WHEN[binding_id] = when
        return fn

    return register


def available(screen: MainView, binding_id: str) -> bool:
    """Whether the key *binding_id* applies now (Textual's ``check_action``: the footer shows it)."""
    spec = _SPECS[binding_id]
    if spec.per_agent and screen.row() is None:
        return False
    when = WHEN.get(binding_id)
    return True if when is None else when(screen)


def run(screen: MainView, binding_id: str) -> None:
    HANDLERS[binding_id](screen)


# ---------------------------------------------------------------------- when a key applies


def _waiting(screen: MainView) -> bool:
    row = screen.row()
    return bool(row and row.waiting)


def _running(screen: MainView) -> bool:
    row = screen.row()
    return bool(row and not row.exited)


def _any_agent(screen: MainView) -> bool:
    return bool(screen.rows)


def _any_waiting(screen: MainView) -> bool:
    return any(r.waiting for r in screen.rows)


def _on_tab(tab: str) -> When:
    return lambda screen: screen.active_tab == tab


# ---------------------------------------------------------------------- navigation


def _tab(tab: str) -> Handler:
    return lambda screen: screen.show_tab(tab)


for _name in ("preview", "diff", "memory", "research"):
    handles(f"tab_{_name}")(_tab(_name))


@handles("next_waiting", when=_any_waiting)
def next_waiting(screen: MainView) -> None:
    names = [r.name for r in screen.visible_rows()]
    waiting = [n for n in names if screen.by_name[n].waiting]
    if not waiting:
        if any(r.waiting for r in screen.rows):
            screen.app.notify("the waiting agents are hidden by the filter; esc clears it")
        return
    start = names.index(screen.selected) if screen.selected in names else -1
    after = [n for n in names[start + 1:] + names[: start + 1] if n in waiting]
    screen.query_one(AgentList).select(after[0])


@handles("filter")
def filter_list(screen: MainView) -> None:
    if screen.active_tab == "memory":  # on the Memory tab, / types a search
        screen.query_one(MemoryPane).focus_search()
        return
    screen.open_filter()


@handles("select")
def select(screen: MainView) -> None:
    name = screen.selected
    if name is not None:
        screen.marked.symmetric_difference_update({name})
        screen.repaint()


@handles("help")
def show_help(screen: MainView) -> None:
    screen.app.push_screen(HelpScreen())


@handles("quit")
def quit_deck(screen: MainView) -> None:
    screen.app.exit(0)  # agents keep running: they live in tmux, not in this process


# ---------------------------------------------------------------------- agents

AgentJob = Callable[[MainView, Any, str], None]


def agent_job(binding_id: str, label: str, notice: str = "",
              when: When | None = None) -> Callable[[AgentJob], AgentJob]:
    """Register the handler of a key that works on one agent (the selected one) in a worker.

    The decorated ``job(screen, deck, name)`` runs through ``screen.run_job`` (the worker's own
    Deck), labelled *label*; *notice* is a toast shown first.  Both are formatted with ``{name}``.
    Without a selected agent the key does nothing."""

    def register(job: AgentJob) -> AgentJob:
        def handler(screen: MainView) -> None:
            name = screen.target()
            if not name:
                return
            if notice:
                screen.app.notify(notice.format(name=name), timeout=2)
            screen.run_job(label.format(name=name), lambda d: job(screen, d, name))

        handles(binding_id, when)(handler)
        return job

    return register


def _listed_when_made(screen: MainView, told: Callable[[str], str]) -> Callable[[str | None], None]:
    """The callback of a dialog that makes an agent (new, fork): tell, select it once listed, poll."""

    def made(name: str | None) -> None:
        if name:
            screen.app.notify(told(name))
            screen.select_when_listed(name)
            screen.poke()

    return made


@handles("new_agent")
def new_agent(screen: MainView) -> None:
    screen.app.push_screen(NewAgentScreen(known=set(screen.by_name)),
                           _listed_when_made(screen, lambda name: f"created {name}"))


@agent_job("attach", "attach {name}")
def attach(screen: MainView, d: Any, name: str) -> None:
    screen.post_message(msg.AttachReady(name, d.attach_argv(name)))


def attach_ready(screen: MainView, message: msg.AttachReady) -> None:
    """The attach argv came back from the worker: hand the terminal to tmux, then look again."""
    try:
        screen.app.attacher(screen.app, message.argv)
    except Exception as exc:  # e.g. SuspendNotSupported
        screen.app.notify(f"cannot attach to {message.name}: {exc}", severity="error")
    screen.preview_feed.forget()
    screen.poke()


@handles("send", when=_running)
def send(screen: MainView) -> None:
    name = screen.target()
    if not name:
        return

    def sent(result: tuple[str, bool] | None) -> None:
        if result:
            text, force = result
            screen.run_job(f"send {name}", lambda d: (d.send(name, text, force=force),
                                                      screen.post_message(msg.ActionDone(f"sent to {name}"))))

    screen.app.push_screen(SendScreen([name], waiting=screen.by_name[name].waiting), sent)


def _answer(approve: bool) -> AgentJob:
    verb = "approved" if approve else "denied"

    def job(screen: MainView, d: Any, name: str) -> None:
        (d.approve if approve else d.deny)(name)
        screen.post_message(msg.ActionDone(f"{verb} {name}'s prompt"))

    return job


agent_job("approve", "approved {name}", when=_waiting)(_answer(True))
agent_job("deny", "denied {name}", when=_waiting)(_answer(False))


@agent_job("restart", "restart {name}", notice="restarting {name}…")
def restart(screen: MainView, d: Any, name: str) -> None:
    d.restart(name)
    screen.post_message(msg.ActionDone(f"restarted {name}"))


@agent_job("kill", "kill {name}")
def kill(screen: MainView, d: Any, name: str) -> None:
    """First what would be lost (a worker reads it), then the dialog (:func:`kill_plan`)."""
    rec = d.get(name)
    dirty, ahead = d.agent_changes(rec)
    screen.post_message(msg.KillPlan(name, dirty, ahead, rec.branch, rec.worktree))


def kill_plan(screen: MainView, plan: msg.KillPlan) -> None:
    def decided(choice: str | None) -> None:
        if choice in ("keep", "discard"):
            _kill(screen, plan.name, discard=choice == "discard")

    screen.app.push_screen(KillScreen(plan), decided)


def _kill(screen: MainView, name: str, discard: bool) -> None:
    def job(d: Any) -> None:
        result = d.kill(name, discard=discard)
        if result.kept:
            text = (f"stopped {name}; kept its worktree and branch ({result.commits} commit(s), "
                    f"{result.uncommitted} uncommitted file(s))")
        else:
            ref = result.recovery_ref
            text = f"removed {name} (worktree and branch)" + (f"; recovery ref {ref}" if ref else "")
        screen.post_message(msg.ActionDone(text))

    screen.run_job(f"kill {name}", job)


@handles("fork")
def fork(screen: MainView) -> None:
    name = screen.target()
    if not name:
        return
    deck = screen.app.deck
    short = deck.plain_name(name)
    label = deck.label_of(name)  # names are unique per repository
    taken = {deck.plain_name(k) for k in screen.by_name if deck.label_of(k) == label}
    suggestion, n = f"{short}-fork", 2
    while suggestion in taken:
        suggestion, n = f"{short}-fork-{n}", n + 1
    screen.app.push_screen(ForkScreen(name, suggestion),
                           _listed_when_made(screen, lambda new: f"forked {name} into {new}"))


@handles("broadcast", when=_any_agent)
def broadcast(screen: MainView) -> None:
    names = [r.name for r in screen.rows if r.name in screen.marked] or [r.name for r in screen.rows]
    live = [n for n in names if not screen.by_name[n].exited]
    if not live:
        screen.app.notify("no running agent to broadcast to", severity="warning")
        return

    def sent(result: tuple[str, bool] | None) -> None:
        if not result:
            return
        text, force = result

        def job(d: Any) -> None:
            done, refused = [], []
            for n in live:
                try:
                    d.send(n, text, force=force)
                    done.append(n)
                except Exception as exc:
                    refused.append(f"{n} ({exc})")
            line = f"sent to {', '.join(done) or 'nobody'}"
            if refused:
                line += "; refused: " + "; ".join(refused)
            screen.post_message(msg.ActionDone(line, severity="warning" if refused else "information"))

        screen.run_job("broadcast", job)

    screen.app.push_screen(SendScreen(live, waiting=any(screen.by_name[n].waiting for n in live)), sent)


# ---------------------------------------------------------------------- review


@agent_job("commit", "commit {name}", notice="committing {name}'s work…")
def commit(screen: MainView, d: Any, name: str) -> None:
    result = d.review.commit(name)
    extra = f" ({result.warning})" if getattr(result, "warning", "") else ""
    screen.post_message(msg.ActionDone(f"committed {result.commit[:10]} in {name}: {result.subject}{extra}"))
    screen.diff_feed.touch(name)


@agent_job("merge", "check merge {name}")
def merge(screen: MainView, d: Any, name: str) -> None:
    """Check first (a worker), show what would change, merge on confirmation."""
    chk = d.review.check_merge(name)
    lines = [f"merge {chk.branch} into {chk.target} ({chk.strategy})", ""]
    if chk.up_to_date:
        screen.post_message(msg.ActionDone(f"{name}: nothing to merge, {chk.target} has it all", poke=False))
        return
    lines.append(f"{chk.commits} commit(s); {len(chk.files)} file(s) change in {chk.target}:")
    lines += [f"  {f.get('status', '')[:1].upper()} {f.get('path', '')}" for f in chk.files[:30]]
    if len(chk.files) > 30:
        lines.append(f"  … {len(chk.files) - 30} more")
    problems = list(chk.problems)
    if problems:
        lines += ["", "Cannot merge now:"] + [f"  {p}" for p in problems]
        screen.post_message(msg.ShowText(f"Merge {name}", lines))
        return

    def do_merge(d2: Any) -> None:
        res = d2.review.merge(name)
        done = getattr(res, "commit", "") or ""
        screen.post_message(msg.ActionDone(f"merged {name} into {chk.target} {done[:10]}".rstrip()))

    screen.post_message(msg.ShowText(f"Merge {name}", lines, confirm=do_merge))


@handles("compare", when=_any_agent)
def compare(screen: MainView) -> None:
    names = [r.name for r in screen.rows if r.name in screen.marked] or (
        [screen.selected] if screen.selected else [])
    if not names:
        screen.app.notify("select agents with space first", severity="warning")
        return

    def job(d: Any) -> None:
        from agentdeck.review.compare import table as compare_table  # in the worker: not needed to paint

        rows = d.review.compare(names)
        screen.post_message(msg.ShowText("Compare " + ", ".join(names), compare_table(rows)))

    screen.app.notify(f"comparing {', '.join(names)}…", timeout=2)
    screen.run_job("compare", job)


# ---------------------------------------------------------------------- the Memory and Research tabs


@handles("edit_note", when=_on_tab("memory"))
def edit_note(screen: MainView) -> None:
    screen.query_one(MemoryPane).edit_selected()


handles("research_pause", when=_on_tab("research"))(lambda screen: screen.query_one(ResearchPane).pause_or_resume())
handles("research_stop", when=_on_tab("research"))(lambda screen: screen.query_one(ResearchPane).ask_stop())
handles("research_promote", when=_on_tab("research"))(lambda screen: screen.query_one(ResearchPane).ask_promote())


# ---------------------------------------------------------------------- one table of keys

_SPECS = {spec.id: spec for spec in KEYS}
if set(HANDLERS) != set(_SPECS):  # pragma: no cover - a programming error, caught by any import
    raise RuntimeError(f"agentdeck.tui.actions and bindings.KEYS disagree: "
                       f"{sorted(set(HANDLERS) ^ set(_SPECS))}")
