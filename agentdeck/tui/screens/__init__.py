"""The deck's dialogs (new agent, send, kill, fork, help, text), one per module; the main screen is
:mod:`agentdeck.tui.main_screen`."""
