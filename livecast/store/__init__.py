"""Durable room state: the ``Store`` protocol and its engines (SQLite, Redis)."""
