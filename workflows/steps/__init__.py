"""Steps: plain functions `run(options, progress) -> dict` with JSON-serialisable results."""
