"""A stop request (SIGTERM from a Tekton timeout or a pod eviction) the stages check between
units of work: nothing new starts, what is in flight finishes, and the summary is still written.
"""

from __future__ import annotations

import signal
import threading

EXIT_CODE = 143
_requested = threading.Event()


def install() -> None:
    """Turn SIGTERM into a stop request instead of an abrupt death."""
    signal.signal(signal.SIGTERM, lambda signum, frame: _requested.set())


def requested() -> bool:
    return _requested.is_set()


def reset() -> None:
    """For tests, which run many jobs in one process."""
    _requested.clear()
