"""The monitoring set-up checked by Prometheus's own tools (issue 14, item 13).

``promtool check config`` on the shipped prometheus.yml (its rule file must resolve
outside the container too), ``promtool check rules`` on rules.yml, and ``promtool test
rules`` on rules.test.yml, which has a case for every alert; ``amtool check-config`` on
the Alertmanager config where amtool is installed. promtool is Debian's ``prometheus``
package (``scripts/bootstrap.sh --test``): without it these tests skip, except in CI
(``CI`` set), where a missing promtool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (scripts/bootstrap.sh --test installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def alerts() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"]}


def test_item_13_promtool_check_config_accepts_the_shipped_prometheus_yml() -> None:
    out = run(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout + out.stderr


def test_item_13_promtool_check_rules() -> None:
    out = run(tool("promtool"), "check", "rules", str(PROMETHEUS / "rules.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(alerts())} rules found" in out.stdout + out.stderr


def test_item_13_promtool_test_rules_with_a_case_per_alert() -> None:
    cases = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())
    fired: dict[str, int] = {}
    for test in cases["tests"]:
        for check in test["alert_rule_test"]:
            if check.get("exp_alerts"):
                fired[check["alertname"]] = fired.get(check["alertname"], 0) + 1
    assert set(fired) == alerts(), f"alerts without a firing case: {alerts() - set(fired)}"
    out = run(tool("promtool"), "test", "rules", str(PROMETHEUS / "rules.test.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_item_13_alertmanager_config_is_valid() -> None:
    config = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text())
    names = {r["name"] for r in config["receivers"]}
    assert config["route"]["receiver"] in names
    amtool = shutil.which("amtool")  # Debian's prometheus-alertmanager; optional
    if amtool is None:
        pytest.skip("amtool is not installed")
    out = run(amtool, "check-config", str(PROMETHEUS / "alertmanager.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
