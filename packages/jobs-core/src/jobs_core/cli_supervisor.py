"""``jobs worker --processes N``: a supervisor of N worker processes.

Each worker is a full ``python -m jobs_core worker ...`` process in its own
session; the supervisor forwards SIGTERM and SIGINT to them, replaces one that
exits to be recycled (``--max-memory``), answers health probes for all of
them, and exits when all of them have. The backend URL reaches the children
through ``JOBS_URL``, never on their command line.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types

from jobs_core.cli_say import Say
from jobs_core.cli_worker_options import WorkerOptions
from jobs_core.worker import Service
from jobs_core.worker_health import (
    RECYCLE_STATUS,
    HealthFile,
    HealthServer,
    WorkerHealth,
    combine,
    parse_address,
    read_health_files,
)

__all__ = ["ENV_SUPERVISOR", "supervise"]

#: Set by :func:`supervise` for its worker processes: its process id (they stop when it is gone).
ENV_SUPERVISOR = "JOBS_SUPERVISOR_PID"

_say = Say("jobs worker", "jobs_core.worker")


def supervise(options: WorkerOptions) -> int:
    """Run ``options.processes`` worker processes; forward signals; return the exit status.

    A child that exits with :data:`~jobs_core.worker_health.RECYCLE_STATUS`
    (``--max-memory``) before a stop was asked for is replaced by a new one.
    With ``--health-port`` or ``--health-file`` each child writes its health
    to a file of its own, and this process answers for all of them.
    """
    options.check()
    _say.use_format(options.log_format)
    env = dict(os.environ)
    if options.url:
        env["JOBS_URL"] = options.url
    env[ENV_SUPERVISOR] = str(os.getpid())
    command = [sys.executable, "-m", "jobs_core", *options.child_args()]
    scratch = None
    files: list[str] = []
    if options.health_port is not None or options.health_file is not None:
        scratch = tempfile.mkdtemp(prefix="jobs-health-")
        files = [os.path.join(scratch, f"worker-{slot}.json") for slot in range(options.processes)]

    def start(slot: int) -> subprocess.Popen[bytes]:
        health = ["--health-file", files[slot]] if files else []
        return subprocess.Popen([*command, *health], env=env, start_new_session=True)

    forwarded: set[int] = set()

    def report() -> list[WorkerHealth]:
        processes = read_health_files(files)
        if forwarded:  # stopping, from the signal on (the children's files follow within a second)
            return [WorkerHealth(False, p.live, "stopping") for p in processes]
        return processes

    def health() -> WorkerHealth:
        return combine(report())

    children = [start(slot) for slot in range(options.processes)]
    _say(f"started {len(children)} worker processes: {', '.join(str(c.pid) for c in children)}")

    def forward(signum: int, frame: types.FrameType | None) -> None:
        forwarded.add(signum)
        for child in children:
            if child.poll() is None:
                try:
                    child.send_signal(signum)
                except OSError:
                    pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop_services = threading.Event()
    services: list[Service] = []
    try:
        if options.health_port is not None:
            address = parse_address(options.health_port)
            services.append(HealthServer(address, report))
        if options.health_file is not None:
            services.append(HealthFile(options.health_file, health))
        for service in services:
            service.start(stop_services)
        codes: dict[int, int] = {}
        while len(codes) < len(children):
            for slot, child in enumerate(children):
                code = child.poll() if slot not in codes else None
                if code is None:
                    continue
                if code == RECYCLE_STATUS and not forwarded:
                    children[slot] = start(slot)
                    _say(f"worker process {child.pid} recycled (--max-memory); started {children[slot].pid}")
                else:
                    codes[slot] = code
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_services.set()
        for service in services:
            service.join(5)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    # A child killed by a signal we forwarded died before it installed its
    # handlers, that is before it reserved anything: a clean stop. One that
    # was recycling when the stop came stopped cleanly too.
    results = [codes[slot] for slot in range(len(children))]
    results = [
        0 if (code < 0 and -code in forwarded) or (code == RECYCLE_STATUS and forwarded) else code
        for code in results
    ]
    for child, code in zip(children, results, strict=True):
        if code != 0:
            _say(f"worker process {child.pid} exited with status {code}")
    return next((code for code in results if code > 0), 1) if any(results) else 0
