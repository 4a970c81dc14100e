"""The deck's key map: every key of the contract, each with an id (for ``[keymap]``) and a description.

One table shared by the main screen (its ``BINDINGS``), the footer, the help
screen, the command palette and the handlers (:mod:`agentdeck.tui.actions`, keyed
by the same ids), so that they never disagree.  Keys are Textual key names
(``question_mark`` for ``?``, ``slash`` for ``/``); users may write either form
in ``[keymap]`` (``help = "?,f1"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class KeySpec:
    id: str  # the binding id users remap in [keymap]
    key: str  # default key(s), Textual names
    description: str  # short text for the footer
    help: str  # one line for the help screen and the palette
    show: bool = True  # shown in the footer (when it applies)
    per_agent: bool = False  # acts on the selected agent (offered per agent in the palette)


KEYS: tuple[KeySpec, ...] = (
    KeySpec("new_agent", "n", "new", "Create an agent: name, definition, base branch, prompt"),
    KeySpec("attach", "enter", "attach", "Attach to the agent's tmux pane (detach with C-b d)",
            per_agent=True),
    KeySpec("send", "s", "send", "Type a message into the agent and submit it", per_agent=True),
    KeySpec("approve", "a", "approve", "Approve the pending permission prompt (waiting only)",
            per_agent=True),
    KeySpec("deny", "D", "deny", "Deny the pending permission prompt (waiting only)", per_agent=True),
    KeySpec("restart", "r", "restart", "Relaunch the agent in its worktree, resuming its conversation",
            per_agent=True),
    KeySpec("kill", "x", "kill", "Stop the agent (says what is kept and what would be lost)",
            per_agent=True),
    KeySpec("commit", "c", "commit", "Commit the agent's work in its worktree", per_agent=True),
    KeySpec("merge", "m", "merge", "Merge the agent's branch into its base branch", per_agent=True),
    KeySpec("compare", "C", "compare", "Compare the selected agents (files, lines, tests)",
            show=False),
    KeySpec("select", "space", "select", "Select / unselect the agent (for compare, broadcast)",
            show=False, per_agent=True),
    KeySpec("broadcast", "b", "broadcast", "Send one message to the selected (or all) agents",
            show=False),
    KeySpec("fork", "f", "fork", "Fork the agent into a new one from its current work", show=False,
            per_agent=True),
    KeySpec("next_waiting", "w", "next waiting", "Jump to the next agent waiting for you"),
    KeySpec("filter", "slash", "filter", "Filter the list (name, definition, status, branch)"),
    KeySpec("tab_preview", "1", "preview", "Preview tab: the agent's pane, live", show=False),
    KeySpec("tab_diff", "2", "diff", "Diff tab: what the agent changed", show=False),
    KeySpec("tab_memory", "3", "memory", "Memory tab: shared notes", show=False),
    KeySpec("tab_research", "4", "research", "Research tab: auto-research runs", show=False),
    KeySpec("edit_note", "e", "edit note", "Edit the selected note (Memory tab)"),
    KeySpec("research_pause", "p", "pause", "Pause / resume the research run (Research tab)"),
    KeySpec("research_stop", "S", "stop", "Stop the research run (Research tab)"),
    KeySpec("research_promote", "P", "promote", "Promote the best trial (Research tab)"),
    KeySpec("help", "question_mark", "help", "Show every key"),
    KeySpec("quit", "q", "quit", "Quit the deck (agents keep running)"),
)

# The palette key lives on the App (Textual's own command palette action).
PALETTE = KeySpec("command_palette", "ctrl+p", "palette",
                  "Command palette: every action for every agent")

BY_ID = {spec.id: spec for spec in (*KEYS, PALETTE)}


def screen_bindings() -> list[Binding]:
    """The main screen's bindings: each runs ``key('<binding id>')`` (:mod:`agentdeck.tui.actions`)."""
    return [
        Binding(spec.key, f"key({spec.id!r})", spec.description, show=spec.show, id=spec.id, tooltip=spec.help)
        for spec in KEYS
    ]


def palette_binding() -> Binding:
    return Binding(PALETTE.key, "command_palette", PALETTE.description, show=False, priority=True,
                   id=PALETTE.id, tooltip=PALETTE.help)


def check_keymap(keymap: dict[str, str]) -> list[str]:
    """Problems with a ``[keymap]`` table (unknown ids, one key for two actions), one line each."""
    problems = []
    unknown = sorted(k for k in keymap if k not in BY_ID)
    if unknown:
        problems.append(
            f"[keymap] {', '.join(unknown)}: unknown binding id; use one of {', '.join(sorted(BY_ID))}"
        )
    from textual.app import App

    normalized = App._normalize_keymap({k: v for k, v in keymap.items() if k in BY_ID})
    owner: dict[str, str] = {}
    for spec in BY_ID.values():
        keys = normalized.get(spec.id) or App._normalize_keymap({spec.id: spec.key})[spec.id]
        for key in keys.split(","):
            key = key.strip()
            if key in owner and owner[key] != spec.id:
                problems.append(f"[keymap] key {key!r} is bound to both {owner[key]} and {spec.id}; pick another")
            owner[key] = spec.id
    return problems


def current_keys(keymap: dict[str, str], spec: KeySpec) -> list[str]:
    """The keys that trigger *spec* now, as Textual key names."""
    from textual.app import App

    value = keymap.get(spec.id) or App._normalize_keymap({spec.id: spec.key})[spec.id]
    return [k.strip() for k in value.split(",") if k.strip()]
