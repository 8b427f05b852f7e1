"""Error types and exit codes shared by the CLI and the library."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import NoReturn

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same "keep what was written" path runs."""


EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a terminated process


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``).

    Only in the main thread (signal handlers can be set nowhere else); the previous handler
    is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    fired = []

    def handler(signum: int, frame: object) -> None:
        if not fired:  # once: a second SIGTERM must not cut short the saving of the output
            fired.append(signum)
            raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report usage errors as one line on stderr (exit 2), not usage + error."""

    def error(message: str) -> NoReturn:
        text = " ".join(message.split())
        parser.exit(EXIT_INPUT, f"emotion-estimator: error: {text} "
                                f"(see {parser.prog} --help)\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def interrupted_status(exc: KeyboardInterrupt, live: bool, status: int) -> int:
    """Say why a run stopped early (Ctrl-C or SIGTERM); its exit code.

    A live camera is ended this way on purpose, so it keeps ``status``.
    """
    import sys

    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    print(f"{what}; output so far is kept", file=sys.stderr)
    if live:
        return status
    return EXIT_TERMINATED if isinstance(exc, Terminated) else 130
