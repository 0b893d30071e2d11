"""``docs/guide/web-apps.md`` runs as written, with FastAPI's and Starlette's test
clients, on SQLite and on PostgreSQL: orders and their jobs are committed
together, a request rolled back leaves no job behind, and the lifespan's
embedded worker ships an order while the application runs.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = ROOT / "packages" / "jobs-core" / "tests" / "test_docs_examples.py"
POSTGRESQL = os.environ.get("JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_web_apps_page_runs_on(backend: str, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("fastapi") if os.environ.get("CI") != "true" else None
    env = {k: v for k, v in os.environ.items() if k != "JOBS_URL"}
    if backend == "postgresql":
        env["SHOP_DATABASE_URL"] = env["SHOP_ASYNC_DATABASE_URL"] = POSTGRESQL
        # Fresh jobs tables for this run, in the same database as the orders (one transaction).
        env["SHOP_JOBS_URL"] = f"{POSTGRESQL}?table_prefix=shop{uuid.uuid4().hex[:8]}_"
    result = subprocess.run(
        [sys.executable, str(RUNNER), "guide/web-apps.md"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_the_lifespan_fails_the_start_when_the_backend_does_not_answer() -> None:
    import asyncio

    from jobs_core import Jobs, JobsApp, JobsError
    from jobs_core.lifespan import jobs_lifespan

    app = JobsApp("sqlite:////nonexistent-directory/jobs.db")

    async def start() -> None:
        async with jobs_lifespan(app):
            raise AssertionError("started without a backend")

    with pytest.raises(JobsError):
        asyncio.run(start())
    with JobsApp("memory://lifespan") as other:
        Jobs.configure("memory://lifespan-before")
        before = Jobs.app()

        async def serve() -> None:
            async with jobs_lifespan(other) as served:
                assert served is other and Jobs.app() is other

        asyncio.run(serve())
        assert Jobs.app() is before  # the facade's default is given back at shutdown
