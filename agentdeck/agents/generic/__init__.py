"""The generic kind: any interactive program, status from its screen (``adapter.py``)."""
