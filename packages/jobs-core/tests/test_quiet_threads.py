"""Threads started by the worker leave SIGTERM and SIGINT to the main thread.

The end-to-end check is tests/test_worker_operations.py: a worker's readiness
probe turns 503 at SIGTERM while its inline job still sleeps.
"""

from __future__ import annotations

import signal
import threading

import pytest
from jobs_core.quiet_threads import quiet

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")


def test_a_quiet_thread_blocks_the_stop_signals_and_only_those() -> None:
    seen: list[set[signal.Signals]] = []
    thread = threading.Thread(target=quiet(lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))))
    thread.start()
    thread.join()
    assert seen == [{signal.SIGTERM, signal.SIGINT}]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # this thread unchanged
