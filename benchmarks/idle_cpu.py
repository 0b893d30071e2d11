"""CPU an idle worker costs: ``python benchmarks/idle_cpu.py --backend mariadb``.

Starts ``jobs worker`` (with the harness's jobs) on an empty queue of fresh tables (prefixed
``bench_<run>_``, dropped afterwards), lets it settle, then reads the CPU time
(user + system, from ``/proc/PID/stat``) of the worker process, and of the
database server process if ``--server-pid`` names it, over ``--seconds``
seconds. Prints each as a share of one core. Linux only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import sqlalchemy as sa  # noqa: E402
from jobs_database.schema import build_tables, drop_all  # noqa: E402
from run import BACKENDS, machine  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main(argv: list[str] | None = None) -> int:
    """Measure one idle worker; print its CPU share (and the server's)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "mariadb"], default="mariadb")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring (default 5)")
    parser.add_argument("--server-pid", type=int, help="also measure this process (the database server)")
    args = parser.parse_args(argv)
    _, url = BACKENDS[args.backend]
    base = os.environ.get(f"BENCH_{args.backend.upper()}_URL", url).replace("{tmp}", "/tmp")
    prefix = f"bench_{uuid.uuid4().hex[:6]}_"
    worker_url = base + ("&" if "?" in base else "?") + f"table_prefix={prefix}"
    command = shutil.which("jobs") or "jobs"
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [command, "worker", "--url", worker_url, "--queue", "idle", "--import", "harness", "--progress", "0"],
        env=env,
    )
    try:
        time.sleep(args.settle)
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with status {proc.returncode}")
        before = cpu_seconds(proc.pid)
        server_before = cpu_seconds(args.server_pid) if args.server_pid else 0.0
        started = time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - started
        used = cpu_seconds(proc.pid) - before
        server_used = cpu_seconds(args.server_pid) - server_before if args.server_pid else 0.0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        engine = sa.create_engine(base)
        try:
            drop_all(engine, build_tables(prefix))
        finally:
            engine.dispose()
    print(f"Machine: {machine()}")
    share = used / wall * 100
    print(f"{args.backend}: idle worker {used:.2f} s CPU in {wall:.0f} s = {share:.2f} % of a core")
    if args.server_pid:
        print(
            f"{args.backend}: server process {server_used:.2f} s CPU in {wall:.0f} s = "
            f"{server_used / wall * 100:.2f} % of a core (it also serves anything else running)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
