"""tagd's exceptions: each carries a one-line reason fit to show a user."""

from __future__ import annotations

from pathlib import Path


class TagdError(Exception):
    """Base class: `str(err)` is a complete one-line message."""


class PhotoError(TagdError):
    """Something about one photo: `path` and a one-line `reason`; `str(err)` is "path: reason"."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ReadError(PhotoError):
    """A photo could not be read or decoded."""


class ModelError(TagdError):
    """The model bundle is missing, broken, or does not match the bundle contract."""


class ConfigError(TagdError):
    """The configuration is invalid."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one line (libraries put tracebacks and hints below it)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
