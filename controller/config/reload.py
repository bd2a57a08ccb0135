"""SIGHUP: which parts of a new config file a running controller takes, and what changed.

Pure functions (no I/O), used by ``Controller.reload``. Venues, access points, clients
(secrets, networks), operators, API tokens, quota, subsidy, enforcer timings, portal
limits and the NAT log's exporters, retention and IPFIX template timeout take effect at
once. What a running process was built from stays as it is until a restart: sockets
(``radius``, ``http``, ``radsec``, the NAT-log listener's; the RadSec certificate files
are read again, so a renewed certificate serves new connections), Redis, the person key,
logging, the SMS backend, the portal cookie key, the archive directory and whether the
enforcer acts (or the NAT-log listener runs); a change there is named (never its value)
so the operator knows to restart.

The change summary names ids only: never a secret, token digest or key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from controller.config.model import Config

FIXED_SECTIONS = ("radius", "http", "redis", "security", "log", "sms", "radsec")
FIXED_FIELDS = (
    ("portal", "cookie_key"),
    ("reports", "archive_dir"),
    ("enforcer", "enabled"),
    # the NAT-log listener's sockets (exporters, retention, template timeout: at once)
    ("natlog", "listen"),
    ("natlog", "bind"),
    ("natlog", "syslog_port"),
    ("natlog", "ipfix_port"),
)
APPLIED_FIELDS = {("radius", "require_message_authenticator")}  # folded into each client
SETTINGS = ("brand", "quota", "subsidy", "enforcer", "portal", "reports", "audit", "natlog")
MAX_IDS = 50  # ids listed per kind and change; the rest is counted


def _port_matches(running: int, wanted: int) -> bool:
    """A port of 0 in the file means "any": the bound port (chosen by the OS or the
    supervisor) satisfies it."""
    return wanted == 0 or wanted == running


def restart_needed(old: Config, new: Config) -> list[str]:
    """Keys (``section.field``) the file changes that take effect only after a restart."""
    out: list[str] = []
    for section in FIXED_SECTIONS:
        a, b = getattr(old, section), getattr(new, section)
        for f in dataclasses.fields(a):
            if (section, f.name) in APPLIED_FIELDS:
                continue
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if f.name.endswith("port") and isinstance(va, int) and isinstance(vb, int):
                if not _port_matches(va, vb):
                    out.append(f"{section}.{f.name}")
            elif va != vb:
                out.append(f"{section}.{f.name}")
    for section, name in FIXED_FIELDS:
        if getattr(getattr(old, section), name) != getattr(getattr(new, section), name):
            out.append(f"{section}.{name}")
    return out


def adopt(old: Config, new: Config) -> Config:
    """``new`` with the parts a running controller cannot change kept from ``old``."""

    def keep(section: str, name: str) -> Any:
        return dataclasses.replace(
            getattr(new, section), **{name: getattr(getattr(old, section), name)}
        )

    fixed: dict[str, Any] = {section: getattr(old, section) for section in FIXED_SECTIONS}
    for section, name in FIXED_FIELDS:
        fixed[section] = keep(section, name)
    return dataclasses.replace(new, **fixed)


def _ids(values: Iterable[str]) -> list[str] | dict[str, Any]:
    ordered = sorted(values)
    if len(ordered) <= MAX_IDS:
        return ordered
    return {"first": ordered[:MAX_IDS], "more": len(ordered) - MAX_IDS}


def _changed_fields(a: Any, b: Any) -> list[str]:
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
    return ["value"]


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    added = new.keys() - old.keys()
    removed = old.keys() - new.keys()
    changed = {
        k: _changed_fields(old[k], new[k]) for k in old.keys() & new.keys() if old[k] != new[k]
    }
    out: dict[str, Any] = {}
    if added:
        out["added"] = _ids(added)
    if removed:
        out["removed"] = _ids(removed)
    if changed:
        if len(changed) <= MAX_IDS:
            out["changed"] = dict(sorted(changed.items()))  # id -> names of changed fields
        else:
            out["changed"] = _ids(changed)
    return out


def changes(old: Config, new: Config) -> dict[str, Any]:
    """What ``new`` adds, removes and changes, by kind; and the settings sections that
    differ. Ids and field names only."""
    kinds: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {
        "venues": (old.venues, new.venues),
        "access_points": (old.access_points, new.access_points),
        "clients": ({c.id: c for c in old.clients}, {c.id: c for c in new.clients}),
        "operators": (old.operators, new.operators),
        "api_tokens": ({t.name: t for t in old.api_tokens}, {t.name: t for t in new.api_tokens}),
    }
    out: dict[str, Any] = {}
    for kind, (a, b) in kinds.items():
        diff = _diff(a, b)
        if diff:
            out[kind] = diff
    settings = [s for s in SETTINGS if getattr(old, s) != getattr(new, s)]
    if settings:
        out["settings"] = settings
    return out


def counts(config: Config) -> dict[str, int]:
    return {
        "venues": len(config.venues),
        "access_points": len(config.access_points),
        "clients": len(config.clients),
        "operators": len(config.operators),
        "api_tokens": len(config.api_tokens),
    }
