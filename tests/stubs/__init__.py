"""Local stub servers of the model APIs the real agent CLIs talk to (tests only).

Each stub is a standard-library ``http.server`` on 127.0.0.1 with a random free
port, answering from a per-test script of rules (see :mod:`tests.stubs._server`).
"""
