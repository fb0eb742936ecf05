"""API keys: their values and secrets (``keys``), who a request is (``principal``), and the
per-request lookup with its short cache (``authenticator``). The SQL lives in ``db/keys.py``."""
