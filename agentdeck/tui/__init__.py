"""The deck: a keyboard-driven Textual TUI over the Deck facade.

Only this package imports Textual; the engine never does, and the deck reads and acts only
through the facade (``agentdeck.deck.DeckLike``: no SQL, git or tmux state of its own).
Entry points:
:func:`agentdeck.tui.app.make_app` (shared by the CLI and the tests) and
:func:`agentdeck.tui.app.run_deck` (``agentdeck`` with no arguments).
"""
