"""deploy/ is checked, not just shipped: every file that can be parsed or run is.

YAML and JSON load; compose, Kubernetes and Grafana files reference what exists; every
Prometheus rule is well formed and names only metrics the code exports; the systemd
units parse with the hardening we promise; the production redis.conf is accepted by the
real redis-server with the settings that keep quota keys; the container configs pass
``check-config``.
"""

from __future__ import annotations

import configparser
import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from controller.config import check_config
from controller.config.redis_url import parse_redis_url
from tests.support.redis_proc import wait_until
from tests.support.redis_topologies import Node

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
METRIC = re.compile(r"\b(citywifi_[a-z0-9_]+)\b")
OTHER_SERIES = {"up"}  # Prometheus' own
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "increase",
    "histogram_quantile",
    "topk",
    "max",
    "ignoring",
    "group_left",
    "and",
    "or",
    "le",
}


def exported_metrics() -> set[str]:
    """Every series name the code can export: the names in Counter/Gauge/Histogram calls."""
    names: set[str] = set()
    for path in [*ROOT.glob("controller/**/*.py"), *ROOT.glob("radius/**/*.py")]:
        for m in re.finditer(
            r"(Counter|Gauge|Histogram|Summary)\(\s*\"(citywifi_[a-z0-9_]+)\"", path.read_text()
        ):
            kind, name = m.groups()
            names.add(name)
            if kind in ("Histogram", "Summary"):
                names.update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
    return names


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quoted = False
    for ch in expr:
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and not quoted


def test_every_yaml_and_json_file_loads() -> None:
    files = [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]
    assert len(files) >= 12
    for path in files:
        assert yaml_docs(path), path
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text())


def test_compose_runs_citywifi_redis_prometheus_grafana() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"citywifi", "redis", "prometheus", "grafana", "alertmanager"} <= set(services)
    cw = services["citywifi"]
    public = "${CITYWIFI_PUBLISH_ADDRESS:-127.0.0.1}"
    assert {f"{public}:1812:1812/udp", f"{public}:1813:1813/udp", f"{public}:8080:8080/tcp"} <= set(
        cw["ports"]
    )
    # nothing is published on every address by default; the rest only on loopback
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith(("127.0.0.1:", public + ":")), f"{name}: {port}"
            if name != "citywifi":
                assert port.startswith("127.0.0.1:"), f"{name}: {port}"
    assert "ports" not in services["redis"]
    # no default password: compose refuses to start Grafana without one
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", password), password
    assert (DEPLOY / cw["build"]["context"] / cw["build"]["dockerfile"]).is_file()
    url = cw["environment"]["CITYWIFI_REDIS_URL"]
    assert parse_redis_url(url).kind == "server" and "//redis:" in url
    assert cw["depends_on"]["redis"]["condition"] == "service_healthy"
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: named volume {source}"
    compose_cli = _compose_cli()
    if compose_cli:  # the real parser, where there is one
        out = subprocess.run(
            [*compose_cli, "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr


def _compose_cli() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return []


def test_dockerfile_builds_from_what_exists() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("FROM ") == 2 and "USER citywifi" in text
    assert "EXPOSE 1812/udp 1813/udp 8080/tcp" in text and "/healthz" in text
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), source


def _by_kind(directory: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml_docs(path):
            out.setdefault(doc["kind"], []).append(doc)
    return out


def test_kubernetes_manifests_hang_together(tmp_path: Path) -> None:
    k = _by_kind(DEPLOY / "k8s")
    listed = yaml.safe_load((DEPLOY / "k8s/kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )

    (deployment,) = k["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert ports == {
        "radius-auth": (1812, "UDP"),
        "radius-acct": (1813, "UDP"),
        "http": (8080, "TCP"),
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["args"][:3] == ["serve", "--config", "/etc/citywifi/citywifi.toml"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"

    protocols = set()
    for service in k["Service"]:
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, port
            protocols.add(port["protocol"])
            if port["protocol"] == "UDP":  # the NAS's source address identifies it
                assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert protocols == {"UDP", "TCP"}

    (hpa,) = k["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2

    # no Secret ships (`kubectl apply -k` must never overwrite the real ones); the
    # Deployment reads the two the operator creates, as the kustomization says how
    assert "Secret" not in k
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    sources = volumes["config"]["projected"]["sources"]
    assert [s["secret"]["name"] for s in sources if "secret" in s] == ["citywifi-config"]
    (env,) = [e for e in container["env"] if e["name"] == "CITYWIFI_REDIS_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "citywifi-redis", "key": "url"}
    howto = (DEPLOY / "k8s/kustomization.yaml").read_text()
    assert "create secret generic citywifi-config" in howto
    assert "create secret generic citywifi-redis" in howto
    # the container config (with its placeholders replaced) and the ConfigMap's
    # registries make a valid configuration
    (registry,) = k["ConfigMap"]
    for name, text in registry["data"].items():
        assert text == (DEPLOY / name).read_text(), f"{name} differs from deploy/{name}"
        (tmp_path / name).write_text(text)
    (tmp_path / "citywifi.toml").write_text(filled_in(DEPLOY / "citywifi.container.toml"))
    assert check_config(tmp_path / "citywifi.toml", environ={}) == []


def filled_in(path: Path) -> str:
    """The file with every CHANGE-ME value replaced by a random one, as an operator would."""
    return re.sub(r'"CHANGE-ME[^"]*"', lambda _: f'"{secrets.token_urlsafe(24)}"', path.read_text())


def test_container_config_refuses_its_placeholders_until_replaced(tmp_path: Path) -> None:
    problems = check_config(DEPLOY / "citywifi.container.toml", environ={})
    assert {p.key for p in problems} == {
        "security.person_key",
        "portal.cookie_key",
        "clients[0].secret",
        "clients[0].uam_secret",
    }
    assert all("placeholder" in p.message and p.line for p in problems)
    for name in ("venues.example.csv", "access_points.example.csv"):
        (tmp_path / name).write_text((DEPLOY / name).read_text())
    (tmp_path / "citywifi.toml").write_text(filled_in(DEPLOY / "citywifi.container.toml"))
    assert check_config(tmp_path / "citywifi.toml", environ={}) == []


def test_prometheus_rules_are_well_formed_and_name_real_metrics() -> None:
    known = exported_metrics()
    assert {"citywifi_radius_requests_total", "citywifi_radius_client_requests_total"} <= known
    groups = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())["groups"]
    alerts = {}
    for group in groups:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            name = rule["alert"]
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name) and name not in alerts
            alerts[name] = rule
            assert DURATION.match(rule["for"]), name
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            expr = rule["expr"]
            assert balanced(expr), name
            for metric in METRIC.findall(expr):
                assert metric in known, f"{name}: {metric} is not exported"
            for series in re.findall(r"\b([a-z_]+)\s*\{", expr):
                assert series in known | OTHER_SERIES | PROMQL_WORDS, f"{name}: {series}"
            for window in re.findall(r"\[([^\]]+)\]", expr):
                assert DURATION.match(window), f"{name}: [{window}]"
    # what operations asked for: RADIUS down, Redis errors, drops, disconnects, silent NAS
    for wanted in (
        "CitywifiRadiusDown",
        "CitywifiRedisErrors",
        "CitywifiHighDropRate",
        "CitywifiDisconnectFailures",
        "CitywifiClientSilent",
    ):
        assert wanted in alerts
    assert (
        "citywifi_radius_client_last_seen_timestamp_seconds"
        in (alerts["CitywifiClientSilent"]["expr"])
    )
    assert "by (client)" in alerts["CitywifiDisconnectFailures"]["expr"]

    prom = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["rules.yml"]  # next to the config, here and in the container
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["citywifi"]["static_configs"][0]["targets"] == ["citywifi:8080"]
    (am,) = prom["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_grafana_dashboard_queries_real_metrics() -> None:
    known = exported_metrics()
    dashboard = json.loads((DEPLOY / "grafana/citywifi-dashboard.json").read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert dashboard["uid"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    seen = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
        for target in panel["targets"]:
            assert balanced(target["expr"]), target["expr"]
            for metric in METRIC.findall(target["expr"]):
                assert metric in known, f"{panel['title']}: {metric}"
                seen.add(metric)
    assert {"citywifi_radius_requests_total", "citywifi_enforcer_disconnects_total"} <= seen


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_systemd_units_parse_with_hardening() -> None:
    unit = _unit("citywifi.service")
    service = unit["Service"]
    assert unit["Unit"]["Description"]
    assert "citywifi serve --config" in service["ExecStart"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service.get("DynamicUser") == "yes" or service.get("User")
    for key, value in {
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "KillMode": "mixed",
    }.items():
        assert service[key] == value, key
    assert "/var/lib/citywifi" in service["ReadWritePaths"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"

    redis_unit = _unit("redis-citywifi.service")
    assert redis_unit["Service"]["LoadCredential"] == "redis.conf:/etc/citywifi/redis.conf"
    assert "%d/redis.conf" in redis_unit["Service"]["ExecStart"]
    assert redis_unit["Service"]["ProtectSystem"] == "strict"
    assert "redis-citywifi.service" in unit["Unit"]["After"]


@pytest.fixture
def production_redis(tmp_path: Path) -> Any:
    """The real redis-server on deploy/redis.conf (only address, dir, memory overridden)."""
    node = Node(tmp_path, [])
    overridden = ("port ", "bind ", "dir ", "maxmemory ", "logfile ")
    node.conf_lines = [
        line
        for line in (DEPLOY / "redis.conf").read_text().splitlines()
        if not line.startswith(overridden)
    ] + [
        f"port {node.port}",
        "bind 127.0.0.1",
        f"dir {tmp_path}",  # (redis chdirs when it reads "dir": it must exist here)
        "maxmemory 64mb",
        f"logfile {tmp_path / 'redis.log'}",
    ]
    node.start()
    yield node
    node.stop()


def test_production_redis_conf_is_accepted_and_never_evicts(production_redis: Node) -> None:
    with production_redis.client(decode_responses=True) as c:
        config = c.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == "noeviction"
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            c.execute_command("FLUSHALL")
        c.set("cw:{p}:u:20260101", 1)
        assert c.get("cw:{p}:u:20260101") == "1"
    wait_until(lambda: (production_redis.dir / "appendonly.aof").exists(), 5, what="AOF")


def test_natlog_listener_unit_verifies(tmp_path: Path) -> None:
    """The standalone ``citywifi natlog listen`` unit: parsed, hardened like the main
    one with only CAP_NET_BIND_SERVICE (syslog's 514), and ``systemd-analyze verify``
    accepts it (its ExecStart pointed at an executable that exists here)."""
    unit = _unit("citywifi-natlog.service")
    service = unit["Service"]
    assert "citywifi natlog listen --config" in service["ExecStart"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["User"] == "citywifi"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["ProtectSystem"] == "strict"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    text = (DEPLOY / "systemd" / "citywifi-natlog.service").read_text()
    copy = tmp_path / "citywifi-natlog.service"
    copy.write_text(text.replace("/opt/citywifi/bin/citywifi", shutil.which("true") or "/bin/true"))
    proc = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
