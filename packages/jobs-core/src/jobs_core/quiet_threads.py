"""Threads that leave the stop signals to the main thread.

A signal sent to a process goes to any one of its threads that does not
block it. CPython runs signal handlers only in the main thread, and only when
that thread runs Python code: a SIGTERM that the kernel hands to a helper
thread while the main thread sleeps in a job (an inline worker runs its jobs
there) waits until the job ends. A worker's readiness probe then says
"serving" for the whole job, and a second signal cannot stop it.

Every thread this project starts in a worker process runs its target through
:func:`quiet`, which blocks ``SIGTERM`` and ``SIGINT`` in that thread (threads
it starts, C threads included, inherit the mask). The kernel then delivers
them to the main thread, interrupting its sleep at once. Elsewhere than on
POSIX, :func:`quiet` changes nothing.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["STOP_SIGNALS", "block_stop_signals", "quiet"]

P = ParamSpec("P")
R = TypeVar("R")

#: The signals a worker stops on, handled by its main thread.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def block_stop_signals() -> None:
    """Block :data:`STOP_SIGNALS` in the calling thread (not the main thread's business)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def quiet(target: Callable[P, R]) -> Callable[P, R]:
    """``target``, first blocking :data:`STOP_SIGNALS` in the thread that runs it.

    For ``threading.Thread(target=quiet(loop))``: the thread never takes a stop
    signal meant for the main thread.
    """

    @functools.wraps(target)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        block_stop_signals()
        return target(*args, **kwargs)

    return run
