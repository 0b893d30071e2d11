"""Throw-away Redis servers for tests: a Redis Cluster and a Sentinel set-up.

Started from the ``redis-server`` and ``redis-cli`` on ``PATH`` (Debian's
``redis-server`` package), on free ports, in a temporary directory, without
persistence; everything stops and is deleted on exit.

``python -m jobs_redis.testing.servers cluster`` (or ``sentinel``) prints
the driver URL on its first line and runs until it is terminated.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from jobs_core.errors import ConfigurationError

#: Seconds a server set-up may take to become ready.
READY_TIMEOUT = 30.0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(bus: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (with ``bus``, its Cluster bus port + 10000 free too)."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        if _port_free(port) and (not bus or _port_free(port + 10000)):
            return port
    raise ConfigurationError("no free port for a test Redis server")


def client(port: int) -> Any:
    """A redis-py client of the server on ``port`` of 127.0.0.1."""
    return redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=5)


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise ConfigurationError(f"{name} is not installed (apt-get install redis-server)")
    return path


class Servers:
    """Redis server processes started for a test, stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-redis-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.url = ""
        #: Ports of a Sentinel set-up's servers (0 elsewhere).
        self.master = self.replica = self.sentinel = 0

    def start(self, port: int, *args: str, config: str | None = None) -> None:
        """Start ``redis-server`` on ``port`` (with a config file's text, and more arguments)."""
        command = [_binary("redis-server")]
        if config is not None:
            path = self.dir / f"{port}.conf"
            path.write_text(config)
            command.append(str(path))
        command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        command += ["--appendonly", "no", "--logfile", str(self.dir / f"{port}.log"), *args]
        self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait(lambda: client(port).ping(), f"redis-server on {port}")

    def kill(self, port: int) -> None:
        """SIGKILL the server on ``port``."""
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def wait(self, check: object, what: str, timeout: float = READY_TIMEOUT) -> None:
        """Call ``check`` until it returns a true value without raising."""
        deadline = time.monotonic() + timeout
        problem: object = None
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError) as exc:
                problem = exc
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"{what} did not become ready in {timeout}s ({problem})")

    def stop(self) -> None:
        """Stop every server and delete their directory."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=30)
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_cluster(masters: int = 3) -> Servers:
    """A Redis Cluster of ``masters`` masters (no replicas); its URL is ``.url``."""
    servers = Servers()
    try:
        ports = []
        for _ in range(masters):
            port = free_port(bus=True)
            ports.append(port)
            servers.start(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
            )
        nodes = [f"127.0.0.1:{p}" for p in ports]
        subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )

        def ready() -> bool:
            for p in ports:
                info = client(p).execute_command("CLUSTER INFO")
                state = info.get("cluster_state") if isinstance(info, dict) else None
                if state not in ("ok", b"ok"):
                    return False
            return True

        servers.wait(ready, "the Redis Cluster")
        servers.url = "redis+cluster://" + ",".join(nodes)
        return servers
    except BaseException:
        servers.stop()
        raise


#: The name Sentinel monitors the master under.
SERVICE = "jobs"


def start_sentinel() -> Servers:
    """One master, one replica and one Sentinel (quorum 1, 1 s down-after); URL in ``.url``.

    ``.master``, ``.replica`` and ``.sentinel`` are the ports.
    """
    servers = Servers()
    try:
        master, replica, sentinel = free_port(), free_port(), free_port()
        servers.start(master)
        servers.start(replica, "--replicaof", "127.0.0.1", str(master))
        servers.wait(
            lambda: client(replica).info("replication").get("master_link_status") == "up",
            "the replica",
        )
        config = (
            f"sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        servers.start(sentinel, "--sentinel", config=config)
        servers.wait(
            lambda: client(sentinel).execute_command("SENTINEL", "REPLICAS", SERVICE),
            "the Sentinel",
        )
        servers.master, servers.replica, servers.sentinel = master, replica, sentinel
        servers.url = f"redis+sentinel://127.0.0.1:{sentinel}/0?service={SERVICE}"
        return servers
    except BaseException:
        servers.stop()
        raise


def main(argv: list[str]) -> int:
    """Start the set-up named by ``argv[0]``, print its URL, run until terminated."""
    kind = argv[0] if argv else "cluster"
    servers = start_cluster() if kind == "cluster" else start_sentinel()
    print(servers.url, flush=True)
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        servers.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main(sys.argv[1:]))
