"""Built-in adapters: memory and SQLite stores, console notifier, JSONL and logging trace sinks.

They register through :mod:`slakit.adapters.builtin`, the same hooks an
installed plugin uses.
"""
