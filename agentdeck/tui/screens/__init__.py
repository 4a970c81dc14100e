"""The deck's screens, one per module."""
