"""``Jobs.status`` of a job dispatched with ``after=``: waiting, then queued, then finished.

On the real backends with workflows (PostgreSQL, SQLite, Redis); the memory
driver's in jobs-core's ``test_workflows.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import Jobs, JobsApp, job
from jobs_core.errors import JobCancelled
from jobs_core.facade import set_default_app


@job(name="wfstatus.note", queue="wfstatus")
def note(payload: Any) -> Any:
    return payload


@pytest.fixture
def app(workflow_url: str) -> Iterator[JobsApp]:
    app = JobsApp(workflow_url)
    previous = set_default_app(app)
    yield app
    set_default_app(previous)
    app.close()


def test_a_dependent_job_is_waiting_until_its_batch_ends_then_queued_then_succeeded(app: JobsApp) -> None:
    batch_id = Jobs.batch([(note, "first")]).dispatch()
    dependent = Jobs.dispatch(note, {"n": 2}, after=[batch_id])
    status = Jobs.status(dependent)
    assert (status.state, status.queue, status.name, status.payload) == (
        "waiting",
        "wfstatus",
        "wfstatus.note",
        {"n": 2},
    )
    assert not status.finished
    app.work("wfstatus", max_jobs=1)  # the batch's job: the dependent is released
    assert Jobs.status(dependent).state == "queued"
    app.work("wfstatus", max_jobs=1)
    assert Jobs.status(dependent).state == "succeeded"
    assert Jobs.result(dependent, timeout=5) == {"n": 2}


def test_a_dependent_job_cancelled_while_waiting_is_cancelled_and_its_result_says_so(app: JobsApp) -> None:
    batch_id = Jobs.batch([(note, "first")]).dispatch()
    dependent = Jobs.dispatch(note, "never", after=[batch_id])
    assert Jobs.cancel(dependent) == "removed"
    status = Jobs.status(dependent)
    assert (status.state, status.finished, status.payload) == ("cancelled", True, None)
    assert status.finished_at is not None
    app.work("wfstatus", max_jobs=5)
    assert Jobs.status(dependent).state == "cancelled"
    with pytest.raises(JobCancelled):
        Jobs.result(dependent, timeout=1)
