"""Fetching and shrinking the photos people post, for the adapters (the core never does I/O on them)."""
