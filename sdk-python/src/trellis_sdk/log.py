"""Log lines in the host's log, tagged with the plugin and the parent.

Inside a component the lines go to the host (``trellis:reconciler/host.log``);
elsewhere (a unit test) they are printed to stderr.
"""

from __future__ import annotations

import sys
from typing import Callable


def _stderr(level: str, message: str) -> None:
    print(f"{level}: {message}", file=sys.stderr)


_sink: Callable[[str, str], None] = _stderr


def set_sink(sink: Callable[[str, str], None]) -> None:
    """Where lines go; the component bridge points it at the host."""
    global _sink
    _sink = sink


def trace(message: str) -> None:
    _sink("TRACE", message)


def debug(message: str) -> None:
    _sink("DEBUG", message)


def info(message: str) -> None:
    _sink("INFO", message)


def warn(message: str) -> None:
    _sink("WARN", message)


def error(message: str) -> None:
    _sink("ERROR", message)
