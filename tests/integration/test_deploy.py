"""The deployment files, without a Docker engine: the compose file's structure, the Dockerfile's
install line, user and HEALTHCHECK (whose one-liner is run against the real health server), and
the Grafana dashboard covering every metric."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml

from bot.ops.health import HealthCheck, make_app, serve_http
from bot.ops.metrics import BotMetrics
from tests.support.redis_server import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def compose() -> dict[str, Any]:
    """deploy/compose.yaml, parsed."""
    parsed: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return parsed


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), " ".join(rest.split())))
    return instructions


def test_compose_runs_redis_with_aof_on_a_volume_and_waits_for_it() -> None:
    """Redis keeps an append-only file on a named volume and has its own health check; the bot
    starts once Redis is healthy, reaches it by service name and listens on all interfaces."""
    services = compose()["services"]
    redis, bot = services["redis"], services["bot"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    [volume] = redis["volumes"]
    name, mount = volume.split(":")
    assert mount == "/data"
    assert name in compose()["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ping" in redis["healthcheck"]["test"]
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["environment"]["REDIS_URL"].startswith("redis://redis:6379")
    assert bot["environment"]["HTTP_HOST"] == "0.0.0.0"  # noqa: S104  inside a container
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_offers_a_commented_prometheus_scrape() -> None:
    """A Prometheus service is there to uncomment; uncommented, it is valid compose YAML."""
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    assert "prometheus" not in compose()["services"]
    uncommented = re.sub(r"(?m)^(\s*)# ((?:  )*[a-z-]+:.*|\s*- .*)$", r"\1\2", text)
    services = yaml.safe_load(uncommented)["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus")


def test_dockerfile_installs_from_pyproject_as_a_non_root_user() -> None:
    """The image installs the project itself (pyproject's dependencies, as `make` does), not a
    separate list, and runs as a user other than root."""
    instructions = dockerfile_instructions()
    copies = [args for word, args in instructions if word == "COPY"]
    assert any("pyproject.toml" in args.split() for args in copies)
    [install] = [args for word, args in instructions if word == "RUN" and "pip install" in args]
    pip_args = shlex.split(install.split("&&")[0])
    assert pip_args[:2] == ["pip", "install"]
    assert pip_args[-1] == "."
    assert not any("requirements" in arg for arg in pip_args)
    [user] = [args for word, args in instructions if word == "USER"]
    assert user not in {"root", "0"}
    assert ("ENV", "HTTP_HOST=0.0.0.0 HTTP_PORT=8080 PYTHONUNBUFFERED=1") in instructions


def healthcheck_command() -> list[str]:
    """The exec form of the Dockerfile's HEALTHCHECK CMD."""
    [args] = [args for word, args in dockerfile_instructions() if word == "HEALTHCHECK"]
    exec_form = args[args.index("CMD") + len("CMD") :].strip()
    command: list[str] = json.loads(exec_form)
    return command


async def test_healthcheck_one_liner_follows_healthz(redis_client: aioredis.Redis) -> None:
    """The HEALTHCHECK command (python and urllib: slim has no curl) exits 0 while /healthz
    says 200 and non-zero when it says 503."""
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    problem: list[str | None] = [None]
    port = free_port()
    app = make_app(HealthCheck(lambda: problem[0], redis_client), BotMetrics())
    async with serve_http(app, "127.0.0.1", port):
        statuses = []
        for problem[0] in (None, "the Discord gateway connection is down (reconnecting)"):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *command[1:],
                env={"HTTP_PORT": str(port)},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            statuses.append(await proc.wait())
    assert statuses[0] == 0
    assert statuses[1] != 0


def test_grafana_dashboard_shows_every_metric() -> None:
    """The dashboard is valid JSON and some panel queries each metric the bot exports."""
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    names = {metric.name for metric in BotMetrics().registry.collect()}
    assert len(names) == 13
    missing = [name for name in names if name not in exprs]
    assert missing == []
