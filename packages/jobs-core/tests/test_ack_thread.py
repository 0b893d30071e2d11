"""The worker's background acknowledgement thread: one call at a time, survives a failing call."""

from __future__ import annotations

import logging
import threading

import pytest
from jobs_core.ack_thread import AckThread


def test_calls_run_one_at_a_time_on_one_thread_and_close_ends_it() -> None:
    seen: list[int] = []
    running = threading.Event()
    release = threading.Event()

    def flush() -> None:
        seen.append(threading.get_ident())
        running.set()
        release.wait(5)

    helper = AckThread(flush)
    helper.submit()
    assert running.wait(5)
    second = threading.Thread(target=helper.submit)
    second.start()
    second.join(0.2)
    assert second.is_alive()  # the second batch waits for the call in flight
    release.set()
    second.join(5)
    helper.wait()
    assert len(seen) == 2 and len(set(seen)) == 1 and seen[0] != threading.get_ident()
    helper.close()
    assert not [t for t in threading.enumerate() if t.name == "jobs-acks"]
    helper.submit()  # a worker run again gets a new thread
    helper.close()
    assert len(seen) == 3


def test_a_call_that_raises_is_logged_and_the_next_batch_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def flush() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("backend went away")

    helper = AckThread(flush)
    with caplog.at_level(logging.ERROR, logger="jobs_core.worker"):
        helper.submit()
        helper.submit()
        helper.close()
    assert len(calls) == 2
    assert "backend went away" in caplog.text
