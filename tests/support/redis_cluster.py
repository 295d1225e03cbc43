"""A private 3-master Redis Cluster for the test session: loopback ports, a temp dir.

Three `redis-server` processes in cluster mode (no replicas, no persistence) are joined with
`redis-cli --cluster create`; `start` returns once every node reports `cluster_state:ok` and
knows the other two, so the first client sees the final slot map.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.redis_server import free_port

MASTERS = 3
READY_TIMEOUT_SECONDS = 30.0
"""Only stops a broken start from hanging; a healthy cluster is ready in about a second."""
POLL_SECONDS = 0.05
_Check = Callable[[dict[str, str] | None], bool]


def _binary(name: str) -> str:
    """The path of a Redis program, or a RuntimeError saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; `make test` installs it")
    return found


class RedisCluster:
    """Three cluster-mode redis-server processes holding every slot between them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(MASTERS)]
        self.bus_ports = [free_port() for _ in range(MASTERS)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """A redis:// URL of one node; a cluster client discovers the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        """Start the nodes, create the cluster, and return once every node says it is ok."""
        try:
            for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
                self.procs.append(self._node(port, bus_port))
            for port in self.ports:
                self._wait_for(port, lambda info: info is not None, "to accept connections")
            self._create()
            for port in self.ports:
                self._wait_for(port, _cluster_ok, "to report cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    def _node(self, port: int, bus_port: int) -> subprocess.Popen[bytes]:
        """One cluster-mode node with its own config file and log in the work dir."""
        node_dir = self.workdir / str(port)
        node_dir.mkdir()
        args = [
            _binary("redis-server"),
            "--port", str(port),
            "--cluster-port", str(bus_port),
            "--bind", "127.0.0.1",
            "--dir", str(node_dir),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "5000",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(node_dir / "redis.log"),
        ]  # fmt: skip
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _create(self) -> None:
        """Join the nodes into one cluster, the slots split evenly among the three masters."""
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        done = subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *nodes, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")

    def _wait_for(self, port: int, ready: _Check, what: str) -> None:
        """Poll CLUSTER INFO of one node until `ready` holds, or fail with its log."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not ready(cluster_info(port)):
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a cluster node exited:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {port} did not come {what}:\n{self.logs()}")
            time.sleep(POLL_SECONDS)

    @contextlib.contextmanager
    def frozen(self, port: int) -> Iterator[None]:
        """Freeze one node (SIGSTOP: it holds connections but answers nothing) inside the block.

        The block must be short: past the node timeout (5 s) the others would mark it failed.
        """
        proc = self.procs[self.ports.index(port)]
        proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGCONT)

    def logs(self) -> str:
        """The nodes' logs, for a failure message."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.workdir.glob("*/redis.log"))
        )

    def stop(self) -> None:
        """Stop every node and wait for it to exit."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


def cluster_info(port: int) -> dict[str, str] | None:
    """The fields of CLUSTER INFO on a node, or None while it does not answer."""
    done = subprocess.run(
        [_binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    if done.returncode != 0 or ":" not in done.stdout:
        return None
    lines = (line.strip() for line in done.stdout.splitlines())
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _cluster_ok(info: dict[str, str] | None) -> bool:
    """Whether a node serves every slot and knows all the masters."""
    return (
        info is not None
        and info.get("cluster_state") == "ok"
        and info.get("cluster_known_nodes") == str(MASTERS)
        and info.get("cluster_slots_ok") == "16384"
    )
