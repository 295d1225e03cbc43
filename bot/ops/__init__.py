"""Operations: the health and metrics server, log set-up, and `python -m bot check` / `sync`."""
