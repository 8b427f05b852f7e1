"""Error types and exit codes shared by the CLI and the library."""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_INPUT = 2


class InputError(ValueError):
    """Bad input from the user (missing file, wrong format): exit code 2."""


def describe(exc: BaseException) -> str:
    """One readable line for an exception; the project's own errors need no type name."""
    text = str(exc).strip().splitlines()
    own = type(exc).__module__.startswith("emotion_estimator")
    if text and (own or isinstance(exc, OSError)):
        return text[0]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
