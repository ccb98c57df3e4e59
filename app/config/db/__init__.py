"""Django's PostgreSQL backend, failing fast for a moment after a connect has failed (config.db.base)."""
