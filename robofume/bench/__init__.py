"""Benchmarks run by ``robofume bench NAME``; each returns a JSON-serialisable dict."""
