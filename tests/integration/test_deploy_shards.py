"""deploy/compose.shards.yaml: two shard processes of one bot on one Redis, as deploy/README.md
shows them; their settings load and together they run every shard exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_two_shard_compose_runs_each_shard_once_on_one_redis() -> None:
    """bot-0 and bot-1 have SHARD_COUNT=2 and SHARD_IDS 0 and 1, the same Redis (healthy first),
    and their own host ports; the settings they get are valid."""
    text = (DEPLOY / "compose.shards.yaml").read_text(encoding="utf-8")
    services: dict[str, Any] = yaml.safe_load(text)["services"]
    bots = {name: service for name, service in services.items() if name.startswith("bot-")}
    assert sorted(bots) == ["bot-0", "bot-1"]
    shards = []
    for service in bots.values():
        environment = {key.lower(): value for key, value in service["environment"].items()}
        settings = load_settings(None, **environment)
        shards.append(settings.shards)
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert sorted(shards) == [(2, (0,)), (2, (1,))]
    ports = [service["ports"][0].split(":")[1] for service in bots.values()]
    assert len(set(ports)) == 2
    assert "--appendonly" in services["redis"]["command"]


def test_deploy_readme_shows_the_two_shard_compose() -> None:
    """The README points at the file and names the settings."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "compose.shards.yaml" in readme
    assert "SHARD_IDS" in readme
    assert "DISCORD_REQUESTS_PER_SECOND" in readme
