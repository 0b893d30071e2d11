"""A new user's first day: the quick start's commands, run as written from a project folder.

Each test lays out a small project in a fresh directory and runs the real
``jobsctl`` console script there in a subprocess, with nothing added to
``PYTHONPATH`` — as someone who followed the README and the quick start would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("jobs_database")

QUICKSTART_JOBS = """
from jobs_core import Job, job


class SendWelcome(Job):
    queue = "emails"
    max_retries = 5

    def handle(self, payload):
        print(f"welcome, {payload['email']}!")


@job(queue="reports", timeout=60)
def build_report(payload):
    return {"rows": payload["rows"] * 2}
"""

DISPATCH = """
from jobs_core import Jobs

from myapp.jobs import SendWelcome, build_report

Jobs.configure("sqlite:///jobs.db")
Jobs.dispatch(SendWelcome, {"email": "ada@example.com"})
Jobs.dispatch(build_report, {"rows": 21})
"""


def jobsctl() -> str:
    """The ``jobsctl`` console script of this environment."""
    beside = Path(sys.executable).with_name("jobsctl")
    found = str(beside) if beside.exists() else shutil.which("jobsctl")
    assert found, "the jobsctl console script is not installed in this environment"
    return found


def user_env() -> dict[str, str]:
    """The environment of a user's shell: no JOBS_URL, nothing of the project on PYTHONPATH."""
    env = dict(os.environ)
    env.pop("JOBS_URL", None)
    env.pop("PYTHONPATH", None)
    return env


def write(project: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def run(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=project, env=user_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def worker(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(project, jobsctl(), "worker", "--url", "sqlite:///jobs.db", *args, "--stop-when-empty")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The quick start's project: myapp/__init__.py, myapp/jobs.py, and two jobs dispatched."""
    write(tmp_path, {"myapp/__init__.py": "", "myapp/jobs.py": QUICKSTART_JOBS, "dispatch.py": DISPATCH})
    dispatched = run(tmp_path, sys.executable, "dispatch.py")
    assert dispatched.returncode == 0, dispatched.stderr
    return tmp_path


def test_the_quick_start_worker_command_works_as_written(project: Path) -> None:
    result = run(
        project,
        jobsctl(),
        "worker",
        "--url",
        "sqlite:///jobs.db",
        "--import",
        "myapp.jobs",
        "--queue",
        "emails",
        "--queue",
        "reports",
        "--stop-when-empty",
    )
    assert result.returncode == 0, result.stderr
    assert "welcome, ada@example.com!" in result.stdout
    assert "processed 2, retried 0, failed 0" in result.stderr
    stats = run(project, jobsctl(), "stats", "--url", "sqlite:///jobs.db", "--json")
    assert '"completed": 2' in stats.stdout


def test_the_scheduler_finds_the_project_modules_too(project: Path) -> None:
    process = subprocess.Popen(
        [jobsctl(), "scheduler", "--url", "sqlite:///jobs.db", "--import", "myapp.jobs"],
        cwd=project,
        env=user_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert "firing 0 schedules on sqlite:///jobs.db" in first, first + process.stderr.read()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0


LISTENING_JOBS = """
import json
import os

from jobs_core import Job, Jobs, hookimpl

OUT = os.path.join(os.path.dirname(__file__), "..", "seen.txt")


def note(text):
    with open(OUT, "a") as out:
        out.write(text + "\\n")


class Audit:
    @hookimpl(wrapper=True)
    def jobs_run_job(self, run):
        note(f"middleware {run.message.name}")
        return (yield)


Jobs.listen("job.processed", lambda event: note(f"processed {event.job_id}"))
Jobs.register_plugin(Audit())


class Ping(Job):
    def handle(self, payload):
        note("ran")
"""


def test_listeners_and_plugins_registered_at_import_apply_to_the_cli_worker(tmp_path: Path) -> None:
    write(tmp_path, {"myapp/__init__.py": "", "myapp/jobs.py": LISTENING_JOBS})
    dispatch = (
        "from jobs_core import Jobs\nfrom myapp.jobs import Ping\nJobs.configure('sqlite:///jobs.db')\n"
    )
    dispatch += "print(Jobs.dispatch(Ping))\n"
    write(tmp_path, {"dispatch.py": dispatch})
    dispatched = run(tmp_path, sys.executable, "dispatch.py")
    assert dispatched.returncode == 0, dispatched.stderr
    job_id = dispatched.stdout.strip()
    (tmp_path / "seen.txt").unlink(missing_ok=True)  # anything the dispatching process noted
    result = worker(tmp_path, "--import", "myapp.jobs")
    assert result.returncode == 0, result.stderr
    seen = (tmp_path / "seen.txt").read_text().splitlines()
    assert seen == ["middleware myapp.jobs.Ping", "ran", f"processed {job_id}"]


PLUGINS = """
import os

from jobs_core import hookimpl

OUT = os.path.join(os.path.dirname(__file__), "..", "plugins.txt")


def note(text):
    with open(OUT, "a") as out:
        out.write(text + "\\n")


class Timing:
    @hookimpl(wrapper=True)
    def jobs_run_job(self, run):
        note("class middleware")
        return (yield)


def setup(app):
    app.listen("job.processed", lambda event: note("listener from setup(app)"))


@hookimpl
def jobs_job_processed(message, result, duration):
    note("module hook")
"""


@pytest.mark.parametrize("processes", ["1", "2"])
def test_plugin_flag_attaches_middleware_and_listeners(project: Path, processes: str) -> None:
    write(project, {"myapp/plugins.py": PLUGINS})
    result = worker(
        project,
        "--import",
        "myapp.jobs",
        "-q",
        "emails",
        "-q",
        "reports",
        "--processes",
        processes,
        "--plugin",
        "myapp.plugins:Timing",
        "--plugin",
        "myapp.plugins:setup",
        "--plugin",
        "myapp.plugins",
    )
    assert result.returncode == 0, result.stderr
    seen = sorted((project / "plugins.txt").read_text().splitlines())
    assert seen == sorted(["class middleware", "listener from setup(app)", "module hook"] * 2)


def test_plugin_flag_takes_the_shipped_logging_middleware(project: Path) -> None:
    result = worker(
        project,
        "--import",
        "myapp.jobs",
        "-q",
        "emails",
        "--plugin",
        "jobs_core:LoggingMiddleware",
        "--log-level",
        "INFO",
    )
    assert result.returncode == 0, result.stderr
    assert "jobs_core.middleware: job myapp.jobs.SendWelcome" in result.stderr


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("myapp.nothere", "--plugin 'myapp.nothere': cannot import 'myapp.nothere'"),
        ("myapp.jobs:Nope", "--plugin 'myapp.jobs:Nope': 'myapp.jobs' has no 'Nope'"),
        ("myapp.jobs:", "expected MODULE or MODULE:OBJECT"),
    ],
)
def test_a_bad_plugin_is_one_line_and_status_2(project: Path, spec: str, error: str) -> None:
    result = worker(project, "--import", "myapp.jobs", "--plugin", spec)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("jobs: error: ")
    assert error in line
    assert "Traceback" not in result.stderr


def test_a_module_configuring_another_backend_than_url_is_refused(project: Path) -> None:
    write(
        project, {"myapp/settings.py": "from jobs_core import Jobs\nJobs.configure('sqlite:///other.db')\n"}
    )
    result = worker(project, "--import", "myapp.settings", "--import", "myapp.jobs")
    assert result.returncode == 2
    assert (
        "--import myapp.settings configured Jobs for sqlite:///other.db, but this worker serves "
        "sqlite:///jobs.db" in result.stderr
    )


def test_without_url_the_worker_serves_what_the_module_configured(project: Path) -> None:
    write(project, {"myapp/settings.py": "from jobs_core import Jobs\nJobs.configure('sqlite:///jobs.db')\n"})
    result = run(
        project,
        jobsctl(),
        "worker",
        "--import",
        "myapp.settings",
        "--import",
        "myapp.jobs",
        "-q",
        "emails",
        "-q",
        "reports",
        "--stop-when-empty",
    )
    assert result.returncode == 0, result.stderr
    assert "on sqlite:///jobs.db" in result.stderr
    assert "processed 2" in result.stderr


def test_import_of_a_package_registers_the_jobs_it_reexports(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "myapp/__init__.py": "",
            "myapp/jobs/__init__.py": (
                "from myapp.jobs.email import SendWelcome\nfrom myapp.jobs import reports\n"
            ),
            "myapp/jobs/email.py": QUICKSTART_JOBS.split("@job", maxsplit=1)[0],
            "myapp/jobs/reports.py": "from jobs_core import job\n\n\n@job(queue='reports')\n"
            "def build_report(payload):\n    print('report', payload['rows'])\n",
            "dispatch.py": DISPATCH.replace(
                "from myapp.jobs import SendWelcome, build_report",
                "from myapp.jobs import SendWelcome\nfrom myapp.jobs.reports import build_report",
            ),
        },
    )
    dispatched = run(tmp_path, sys.executable, "dispatch.py")
    assert dispatched.returncode == 0, dispatched.stderr
    result = worker(tmp_path, "--import", "myapp.jobs", "-q", "emails", "-q", "reports")
    assert result.returncode == 0, result.stderr
    assert "with 2 jobs" in result.stderr
    assert "welcome, ada@example.com!" in result.stdout
    assert "report 21" in result.stdout
    assert "processed 2, retried 0, failed 0" in result.stderr
