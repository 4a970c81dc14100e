"""agentdeck: run many coding agents side by side.

The engine (everything outside ``agentdeck.tui``) never imports Textual.
"""

__version__ = "0.1.0"
