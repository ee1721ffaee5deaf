"""docker-compose.kafka.yml and the Prometheus/Grafana files it mounts are consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO_ROOT / "docker-compose.kafka.yml"


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def host_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount of a service."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of every published port of a service."""
    ports = []
    for port in service.get("ports", []):
        parts = str(port).split("/")[0].split(":")
        ports.append((int(parts[-2]), int(parts[-1])))
    return ports


def test_services_present(compose: dict[str, Any]) -> None:
    assert {"kafka", "prometheus", "grafana"} <= set(compose["services"])


def test_registry_service(compose: dict[str, Any]) -> None:
    """The same registry and port as scripts/services: Apicurio's Confluent API on 8081."""
    registry = compose["services"]["registry"]
    assert registry["image"] == "apicurio/apicurio-registry-mem:2.4.2.Final"
    assert (8081, 8080) in published_ports(registry)


def test_kafka_service(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert (9092, 9092) in published_ports(kafka)
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "PLAINTEXT://127.0.0.1:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_published_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert (9090, 9090) in published_ports(services["prometheus"])
    assert (3000, 3000) in published_ports(services["grafana"])


def test_every_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    mounts = [m for svc in compose["services"].values() for m in host_mounts(svc)]
    assert mounts, "expected bind mounts for prometheus and grafana"
    for source, _target in mounts:
        assert (REPO_ROOT / source).exists(), f"{source} is mounted but missing from the repo"


def test_prometheus_config(compose: dict[str, Any]) -> None:
    mounts = dict(host_mounts(compose["services"]["prometheus"]))
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"

    config = load_yaml(REPO_ROOT / "prometheus" / "prometheus.yml")
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert "host.docker.internal:9400" in targets
    assert any(Path(rule).name == "alerts.yml" for rule in config["rule_files"])

    alerts = load_yaml(REPO_ROOT / "prometheus" / "alerts.yml")
    assert isinstance(alerts["groups"], list)


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    mounts = dict(host_mounts(compose["services"]["grafana"]))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./grafana/dashboards"] == "/var/lib/grafana/dashboards"

    provisioning = REPO_ROOT / "grafana" / "provisioning"
    files = sorted(provisioning.rglob("*.yml")) + sorted(provisioning.rglob("*.yaml"))
    assert files
    for path in files:
        assert isinstance(load_yaml(path), dict), f"{path} does not parse to a mapping"

    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    prometheus = next(ds for ds in datasources if ds["type"] == "prometheus")
    assert prometheus["uid"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"

    providers = load_yaml(provisioning / "dashboards" / "poller.yml")["providers"]
    assert any(
        p["type"] == "file" and p["options"]["path"] == "/var/lib/grafana/dashboards"
        for p in providers
    )
