"""Install the built wheels into a fresh virtual environment and check what a user gets.

Usage: python tests/packaging/check_wheels.py DIST_DIR

Checks, in an environment that has never seen the source tree:
- every wheel installs (jobs-core with its ``testing`` extra);
- the public names import;
- the ``jobs.drivers`` entry points hold ``memory`` (and each driver package's schemes);
- the ``jobs.plugins`` entry points of plugin packages (jobs-otel) load into a new app;
- the pytest plugin is discovered and the conformance suite collects from the wheel;
- the ``jobs`` console script (and its unshadowed twin ``jobsctl``) runs.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import venv

CHECK_IMPORTS = """
import json
from importlib.metadata import entry_points
from jobs_core import Job, job, DriverSpec, Driver, Capability, hookimpl
names = sorted(ep.name for ep in entry_points(group="jobs.drivers"))
plugins = sorted(ep.name for ep in entry_points(group="pytest11"))
app_plugins = sorted(ep.name for ep in entry_points(group="jobs.plugins"))
from jobs_core import JobsApp
loaded = sorted(n.split(":", 1)[1] for n, _ in JobsApp("memory://").plugin_manager.list_name_plugin()
                if n.startswith("jobs.plugins:"))
print(json.dumps({"drivers": names, "pytest11": plugins, "plugins": app_plugins, "loaded": loaded}))
"""

EXPECTED_SCHEMES = {
    "jobs_core": {"memory"},
    "jobs_database": {"sqlite", "postgresql", "mysql"},
    "jobs_kafka": {"kafka"},
    "jobs_redis": {"redis", "rediss"},
}

CHECK_DASHBOARD_FILES = """
from importlib.resources import files
for name in ("templates/base.html", "static/htmx.min.js", "static/dashboard.css", "py.typed"):
    assert files("jobs_dashboard").joinpath(name).is_file(), name
"""

#: Entry points of the group ``jobs.plugins`` each plugin package must declare.
EXPECTED_PLUGINS = {"jobs_otel": {"otel"}}


def run(*args: str, cwd: str | None = None) -> str:
    print("+", " ".join(args), flush=True)
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(result.stdout)
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"command failed with exit code {result.returncode}: {' '.join(args)}")
    return result.stdout


def main() -> None:
    dist = pathlib.Path(sys.argv[1]).resolve()
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    core = [w for w in wheels if w.name.startswith("jobs_core-")]
    if not core:
        raise SystemExit(f"no jobs_core wheel in {dist}")
    if len(sdists) < len(wheels):
        raise SystemExit(f"expected an sdist beside every wheel in {dist}")
    with tempfile.TemporaryDirectory() as scratch:
        env_dir = pathlib.Path(scratch) / "venv"
        venv.create(env_dir, with_pip=True)
        python = str(env_dir / "bin" / "python")
        newest_core = core[-1]
        others = [w for w in wheels if not w.name.startswith("jobs_core-")]
        run(python, "-m", "pip", "install", "--quiet", f"{newest_core}[testing]", *map(str, others))
        report = json.loads(run(python, "-c", CHECK_IMPORTS, cwd=scratch))
        drivers = set(report["drivers"])
        expected = set(EXPECTED_SCHEMES["jobs_core"])
        for wheel in others:
            top = wheel.name.split("-", 1)[0]
            expected |= EXPECTED_SCHEMES.get(top, set())
        missing = expected - drivers
        if missing:
            raise SystemExit(
                f"entry points missing from jobs.drivers: {sorted(missing)} (found {sorted(drivers)})"
            )
        wanted = set().union(*(EXPECTED_PLUGINS.get(w.name.split("-", 1)[0], set()) for w in others))
        if not wanted <= set(report["plugins"]) or not wanted <= set(report["loaded"]):
            raise SystemExit(
                f"jobs.plugins entry points {sorted(wanted)} not declared or not loaded into an app: {report}"
            )
        if "jobs" not in report["pytest11"]:
            raise SystemExit(f"pytest plugin not registered: pytest11 = {report['pytest11']}")
        collected = run(
            str(env_dir / "bin" / "pytest"),
            "--co",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "jobs_core.testing.conformance",
            "--jobs-driver=memory://",
            cwd=scratch,
        )
        if "jobs driver: memory" not in collected:
            raise SystemExit("the pytest plugin's report header does not name the memory driver")
        print(collected.strip().splitlines()[-1])
        print(run(str(env_dir / "bin" / "jobs"), "--version", cwd=scratch).strip())
        print(run(str(env_dir / "bin" / "jobsctl"), "--version", cwd=scratch).strip())
        print(run(str(env_dir / "bin" / "jobs"), "drivers", cwd=scratch).strip())
        if any(w.name.startswith("jobs_dashboard-") for w in others):
            # The plugin command comes with the wheel, and so do its templates and vendored htmx.
            if "--token" not in run(str(env_dir / "bin" / "jobs"), "dashboard", "--help", cwd=scratch):
                raise SystemExit("jobs dashboard --help does not offer --token")
            run(python, "-c", CHECK_DASHBOARD_FILES, cwd=scratch)
    check_source_install()
    print(f"packaging OK: {len(wheels)} wheels, drivers {sorted(drivers)}")


def check_source_install() -> None:
    """A source install of ``./packages/jobs-core[testing]`` gives the public API and ``memory``."""
    source = pathlib.Path(__file__).resolve().parents[2] / "packages" / "jobs-core"
    with tempfile.TemporaryDirectory() as scratch:
        env_dir = pathlib.Path(scratch) / "venv"
        venv.create(env_dir, with_pip=True)
        python = str(env_dir / "bin" / "python")
        run(python, "-m", "pip", "install", "--quiet", f"{source}[testing]")
        report = json.loads(run(python, "-c", CHECK_IMPORTS, cwd=scratch))
        if "memory" not in report["drivers"] or "jobs" not in report["pytest11"]:
            raise SystemExit(f"source install of jobs-core lacks memory or the pytest plugin: {report}")
        print(f"source install OK: drivers {report['drivers']}")


if __name__ == "__main__":
    main()
