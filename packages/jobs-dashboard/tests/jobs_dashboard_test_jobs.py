"""Jobs the dashboard's tests dispatch."""

from __future__ import annotations

from typing import Any

from jobs_core import job


@job(name="tests.explode", max_retries=0)
def explode(payload: Any) -> None:
    """Always fails (so that the job lands in the failed store)."""
    raise RuntimeError(payload.get("message", "boom"))


@job(name="tests.ok")
def ok(payload: Any) -> Any:
    """Succeeds."""
    return payload


TEST_JOBS = [explode, ok]
