"""Errors of the real-dataset fetchers (kept apart so converters and fetcher share them)."""


class FetchError(RuntimeError):
    """A download, verification, extraction or conversion failed (the message says what to do)."""
