"""Config loading and validation: the example loads, and every mistake is named with file:line."""

from __future__ import annotations

import hashlib
import ipaddress
from decimal import Decimal
from pathlib import Path

import pytest

from controller.config import (
    Config,
    ConfigError,
    ConfigProblem,
    check_config,
    load_config,
)
from controller.domain.venue_types import VENUE_TYPES

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "citywifi.example.toml"

BASE = """\
[brand]
ssid = "i-Test"
name = "Test WiFi"

[[operators]]
id = "op-a"
name = { zh = "甲运营商", en = "Operator A" }

[[venues]]
id = "v1"
name = { zh = "一号场所", en = "Venue One" }
type = "hospital"
district = "桥西区"
operator = "op-a"

[[clients]]
id = "c1"
address = "10.0.0.0/24"
secret = "s3cret-Nq7vWk2pLx9z"
venue = "v1"
"""


def write(tmp_path: Path, text: str, name: str = "citywifi.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line containing ``needle`` (-1: the last)."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1 if nth > 0 else nth]


def problems_for(tmp_path: Path, text: str) -> list[ConfigProblem]:
    return check_config(write(tmp_path, text), environ={})


def only(problems: list[ConfigProblem], key: str) -> ConfigProblem:
    found = [p for p in problems if p.key == key]
    assert len(found) == 1, f"want one problem for {key!r}, got: {[str(p) for p in problems]}"
    return found[0]


# ----------------------------------------------------------------------------- the example


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE, environ={})
    assert isinstance(config, Config)
    assert config.brand.ssid == "i-Shijiazhuang"
    assert config.brand.name == {"zh": "无线石家庄", "en": "Wireless Shijiazhuang"}
    assert {v.type for v in config.venues.values()} == set(VENUE_TYPES)
    assert len(VENUE_TYPES) == 11
    assert set(config.operators) == {"op-telecom", "op-mobile", "op-unicom"}
    # CSV registry rows merged with the TOML tables
    assert "sjz-airport" in config.venues
    assert config.venues["sjz-airport"].name["en"] == "Shijiazhuang Zhengding International Airport"
    assert config.access_points["00-11-22-33-47-01"].venue == "wanda-plaza-yuhua"
    assert config.access_points["00-11-22-33-44-66"].venue == "sjz-railway-station"
    assert config.access_points["hebtu-library-ap"].venue == "hebtu-main-campus"
    # the radclient client
    local = next(c for c in config.clients if c.network.overlaps(ipaddress.ip_network("127.0.0.1")))
    assert (local.secret, local.vendor, local.require_message_authenticator) == (
        b"testing123",
        "generic",
        True,
    )
    # no token ships: a published one would let anyone in (check-config refuses it)
    assert config.api_tokens == ()
    # testing123 runs, but only on the loopback client, and with a warning
    (warning,) = config.warnings
    assert warning.warning and warning.key.endswith(".secret") and "well-known" in str(warning)
    assert set(config.subsidy.rates) == set(VENUE_TYPES)
    assert config.subsidy.rates["hospital"] == Decimal("0.6")
    assert all(rate > 0 for rate in config.subsidy.rates.values())
    # relative paths resolve against the config file's directory
    assert config.redis.data_dir == EXAMPLE.parent / "var"
    assert config.sms.path == EXAMPLE.parent / "var" / "sms.jsonl"
    assert config.source == EXAMPLE
    assert (config.radius.auth_port, config.radius.acct_port, config.http.port) == (
        1812,
        1813,
        8080,
    )
    assert check_config(EXAMPLE, environ={}) == []


def test_registries_are_read_only() -> None:
    config = load_config(EXAMPLE, environ={})
    with pytest.raises(TypeError):
        config.venues["x"] = config.venues["sjz-airport"]  # type: ignore[index]


# ----------------------------------------------------------------------------- defaults


def test_minimal_config_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), environ={})
    assert config.brand.name == {"zh": "Test WiFi", "en": "Test WiFi"}
    assert config.operators["op-a"].name == {"zh": "甲运营商", "en": "Operator A"}
    assert config.quota.daily_seconds == 7200
    assert config.quota.timezone.key == "Asia/Shanghai"
    assert config.quota.stale_grace == 750.0
    assert config.redis.url == ""
    assert config.redis.appendfsync == "everysec"
    assert config.redis.data_dir == tmp_path / "var"
    assert config.sms.path == tmp_path / "var" / "sms.jsonl"
    (client,) = config.clients
    assert client.network == ipaddress.ip_network("10.0.0.0/24")
    assert client.secret == b"s3cret-Nq7vWk2pLx9z"
    assert (client.vendor, client.coa_port, client.require_message_authenticator) == (
        "generic",
        3799,
        True,
    )
    assert config.subsidy.rates["hospital"] == Decimal(0)


def test_derived_defaults_follow_their_settings(tmp_path: Path) -> None:
    text = BASE + (
        "\n[quota]\ninterim_interval = 60\n\n[radius]\nrequire_message_authenticator = false\n"
        '\n[redis]\ndata_dir = "data"\n\n[subsidy]\nrates = { hospital = 0.1 }\n'
    )
    config = load_config(write(tmp_path, text), environ={})
    assert config.quota.stale_grace == 150.0
    assert config.quota.min_grant_seconds == 60  # one interim interval
    assert config.clients[0].require_message_authenticator is False
    assert config.sms.path == tmp_path / "data" / "sms.jsonl"
    assert config.subsidy.rates["hospital"] == Decimal("0.1")  # not 0.1000000000000000055…


def test_client_address_host_bits_and_single_ip(tmp_path: Path) -> None:
    text = BASE.replace('"10.0.0.0/24"', '"10.0.0.7/24"') + (
        '\n[[clients]]\nid = "c2"\naddress = "192.0.2.5"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n'
    )
    config = load_config(write(tmp_path, text), environ={})
    assert [str(c.network) for c in config.clients] == ["10.0.0.0/24", "192.0.2.5/32"]


# ----------------------------------------------------------------------------- problems

# (text appended to BASE, expected key, needle on the expected line, words in the message)
CASES = [
    (
        "\n[quota]\ndaily_secs = 100\n",
        "quota.daily_secs",
        "daily_secs",
        "unknown key 'daily_secs' (did you mean 'daily_seconds'?)",
    ),
    ("\n[qouta]\ndaily_seconds = 1\n", "qouta", "[qouta]", "did you mean 'quota'?"),
    ("\n[quota]\ndaily_seconds = 0\n", "quota.daily_seconds", "daily_seconds", "at least 1"),
    ('\n[quota]\ndaily_seconds = "2h"\n', "quota.daily_seconds", "daily_seconds", "integer"),
    (
        "\n[quota]\ninterim_interval = 30\n",
        "quota.interim_interval",
        "interim_interval",
        "must be at least 60 (RFC 2869 §5.16), got 30",
    ),
    (
        "\n[quota]\nmin_grant_seconds = 0\n",
        "quota.min_grant_seconds",
        "min_grant_seconds",
        "between 1 and 7200",
    ),
    (
        "\n[quota]\ndaily_seconds = 600\nmin_grant_seconds = 900\n",
        "quota.min_grant_seconds",
        "min_grant_seconds",
        "must be between 1 and 600 (quota.daily_seconds), got 900",
    ),
    ("\n[quota]\nlogin_ttl = 5\n", "quota.login_ttl", "login_ttl", "at least 30"),
    ("\n[quota]\nmax_devices = 0\n", "quota.max_devices", "max_devices", "at least 1"),
    ("\n[quota]\nstale_grace = 0\n", "quota.stale_grace", "stale_grace", "greater than 0"),
    (
        '\n[quota]\ntimezone = "Asia/Shangai"\n',
        "quota.timezone",
        "timezone",
        "did you mean 'Asia/Shanghai'?",
    ),
    ("\n[radius]\nauth_port = 70000\n", "radius.auth_port", "auth_port", "between 0 and 65535"),
    ("\n[radius]\ndedup_window = 0\n", "radius.dedup_window", "dedup_window", "greater than 0"),
    ("\n[radius]\nmax_in_flight = 0\n", "radius.max_in_flight", "max_in_flight", "at least 1"),
    (
        "\n[radius]\nrequire_message_authenticator = 1\n",
        "radius.require_message_authenticator",
        "require_message_authenticator",
        "true or false",
    ),
    ('\n[radius]\nbind = "everywhere"\n', "radius.bind", "bind", "not an IP address"),
    ("\n[http]\nport = -1\n", "http.port", "port", "between 0 and 65535"),
    ("\n[http]\nheader_timeout = 0\n", "http.header_timeout", "header_timeout", "greater than 0"),
    (
        "\n[http]\nmax_connections_per_ip = 0\n",
        "http.max_connections_per_ip",
        "per_ip",
        "at least 1",
    ),
    ("\n[http]\nreserved_fds = -1\n", "http.reserved_fds", "reserved_fds", "at least 0"),
    ('\n[http]\nmetrics_bind = "lan"\n', "http.metrics_bind", "metrics_bind", "not an IP address"),
    (
        '\n[http]\nmetrics_bind = "127.0.0.1"\nmetrics_port = 8080\n',
        "http.metrics_port",
        "metrics_port",
        "must differ from http.port (8080)",
    ),
    ('\n[redis]\nmaxmemory = "lots"\n', "redis.maxmemory", "maxmemory", 'as 1073741824 or "1gb"'),
    ('\n[redis]\nmaxmemory = "512kb"\n', "redis.maxmemory", "maxmemory", "at least 1mb"),
    ("\n[redis]\nmemory_high_water = 1.2\n", "redis.memory_high_water", "high_water", "below 1"),
    (
        '\n[redis]\nappendfsync = "sometimes"\n',
        "redis.appendfsync",
        "appendfsync",
        "not one of always, everysec, no",
    ),
    ('\n[redis]\nurl = "localhost:6379"\n', "redis.url", "url", "not a URL"),
    (
        "\n[enforcer]\ndisconnect_timestamp_window = -5\n",
        "enforcer.disconnect_timestamp_window",
        "disconnect_timestamp_window",
        "between 0 and 86400",
    ),
    ('\n[sms]\nbackend = "carrier-pigeon"\n', "sms.backend", "backend", "file, webhook"),
    ('\n[sms]\nbackend = "webhook"\n', "sms.webhook_url", "[sms]", "missing required key"),
    (
        '\n[sms]\nbackend = "webhook"\nwebhook_url = "ftp://gw"\n',
        "sms.webhook_url",
        "webhook_url",
        "http:// or https://",
    ),
    (
        "\n[sms]\nwebhook_headers = { X-Key = 5 }\n",
        "sms.webhook_headers.X-Key",
        "webhook_headers",
        "expected a string",
    ),
    ('\n[log]\nlevel = "verbose"\n', "log.level", "level", "debug, error, info, warning"),
    ('\n[log]\nformat = "xml"\n', "log.format", "format", "console, json"),
    ('\n[security]\nperson_key = "short"\n', "security.person_key", "person_key", "16"),
    ("\n[brand.extra]\n", "brand.extra", "[brand.extra]", "unknown key 'extra'"),
    ('\n[[clients]]\nid = "c2"\nssid = "x"\n', "clients[1].ssid", "ssid", "(did you mean 'id'?)"),
    (
        '\n[[venues]]\nid = "v2"\nname = "V2"\ntype = "airport"\ndistrict = "d"\n'
        'operator = "op-a"\n',
        "venues[1].type",
        'type = "airport"',
        "unknown venue type 'airport'; valid types: community, convention_center",
    ),
    (
        '\n[[venues]]\nid = "v2"\nname = "V2"\ntype = "hospital"\ndistrict = "d"\n'
        'operator = "op-z"\n',
        "venues[1].operator",
        'operator = "op-z"',
        "operator 'op-z' is not defined",
    ),
    (
        '\n[[venues]]\nid = "v2"\nname = "V2"\ntype = "hospital"\noperator = "op-a"\n',
        "venues[1].district",
        "[[venues]]",  # missing key: the line of its table header
        "missing required key 'district'",
    ),
    (
        '\n[[venues]]\nid = "v1"\nname = "V1 again"\ntype = "hospital"\ndistrict = "d"\n'
        'operator = "op-a"\n',
        "venues[1].id",
        'id = "v1"',
        "duplicate venue id 'v1' (first defined at",
    ),
    (
        '\n[[venues]]\nid = "v 2"\nname = "V2"\ntype = "hospital"\ndistrict = "d"\n'
        'operator = "op-a"\n',
        "venues[1].id",
        'id = "v 2"',
        "not a valid id",
    ),
    (
        '\n[[venues]]\nid = "v2"\nname = { zh = "", en = "" }\ntype = "hospital"\n'
        'district = "d"\noperator = "op-a"\n',
        "venues[1].name",
        "name = {",
        "non-empty name",
    ),
    (
        '\n[[venues]]\nid = "v2"\nname = { zh = "二", fr = "deux" }\ntype = "hospital"\n'
        'district = "d"\noperator = "op-a"\n',
        "venues[1].name.fr",
        "name = {",
        "unknown language 'fr'",
    ),
    ('\n[[operators]]\nid = "op-a"\nname = "A"\n', "operators[1].id", 'id = "op-a"', "duplicate"),
    (
        '\n[[clients]]\nid = "c1"\naddress = "10.9.0.0/24"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n',
        "clients[1].id",
        'id = "c1"',
        "duplicate client id 'c1'",
    ),
    (
        '\n[[clients]]\nid = "c2"\naddress = "10.9.0.0/24"\nsecret = ""\nvenue = "v1"\n',
        "clients[1].secret",
        'secret = ""',
        "must not be empty",
    ),
    (
        '\n[[clients]]\nid = "c2"\naddress = "10.9.0.0/24"\nvenue = "v1"\n',
        "clients[1].secret",
        "[[clients]]",
        "missing required key 'secret'",
    ),
    (
        '\n[[clients]]\nid = "c2"\naddress = "10.9.0.0/33"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n',
        "clients[1].address",
        "10.9.0.0/33",
        "not an IP address or network",
    ),
    (
        '\n[[clients]]\nid = "c2"\naddress = "10.9.0.0/24"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v9"\n',
        "clients[1].venue",
        'venue = "v9"',
        "venue 'v9' is not defined",
    ),
    (
        '\n[[clients]]\nid = "c2"\naddress = "10.9.0.0/24"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n'
        'vendor = "cisco"\n',
        "clients[1].vendor",
        "vendor",
        "chilli, generic, mikrotik",
    ),
    (
        '\n[[clients]]\nid = "c2"\naddress = "10.9.0.0/24"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n'
        "coa_port = 0\n",
        "clients[1].coa_port",
        "coa_port",
        "between 1 and 65535",
    ),
    (
        '\n[[access_points]]\nmatch = "00:11:22:33:44:55"\nvenue = "v1"\n'
        '\n[[access_points]]\nmatch = "0011.2233.4455"\nvenue = "v1"\n',
        "access_points[1].match",
        "0011.2233.4455",
        "duplicate access point match '00-11-22-33-44-55'",
    ),
    (
        '\n[[access_points]]\nmatch = "ap-1"\nvenue = "nowhere"\n',
        "access_points[0].venue",
        'venue = "nowhere"',
        "venue 'nowhere' is not defined",
    ),
    (
        "\n[subsidy]\nrates = { hospital = -0.5 }\n",
        "subsidy.rates.hospital",
        "rates",
        "at least 0",
    ),
    (
        "\n[subsidy]\nrates = { airport = 0.5 }\n",
        "subsidy.rates.airport",
        "rates",
        "unknown venue type 'airport'",
    ),
    (
        '\n[[api_tokens]]\nname = "t"\nsha256 = "ABC"\nroles = ["reports"]\n',
        "api_tokens[0].sha256",
        "sha256",
        "64 lowercase hex",
    ),
    (
        f'\n[[api_tokens]]\nname = "t"\nsha256 = "{"a" * 64}"\nroles = ["reports", "boss"]\n',
        "api_tokens[0].roles[1]",
        "roles",
        "'boss' is not one of admin, audit, reports",
    ),
    (
        f'\n[[api_tokens]]\nname = "t"\nsha256 = "{"a" * 64}"\nroles = ["audit"]\n'
        f'\n[[api_tokens]]\nname = "t"\nsha256 = "{"b" * 64}"\nroles = ["audit"]\n',
        "api_tokens[1].name",
        'name = "t"',
        "duplicate token name 't'",
    ),
]


@pytest.mark.parametrize(("extra", "key", "needle", "words"), CASES, ids=[c[1] for c in CASES])
def test_problem_is_reported_with_key_and_line(
    tmp_path: Path, extra: str, key: str, needle: str, words: str
) -> None:
    text = BASE + extra
    problems = problems_for(tmp_path, text)
    problem = only(problems, key)
    assert words in problem.message
    assert problem.line == line_of(text, needle, -1), str(problem)
    assert problem.file == tmp_path / "citywifi.toml"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "citywifi.toml", environ={})
    assert problem in info.value.problems


def test_unknown_key_message_exact(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, BASE + "\n[quota]\ndaily_secs = 7200\n")
    assert problems == [
        ConfigProblem(
            tmp_path / "citywifi.toml",
            BASE.count("\n") + 3,
            "quota.daily_secs",
            "unknown key 'daily_secs' (did you mean 'daily_seconds'?)",
        )
    ]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    problem = only(problems_for(tmp_path, 'sid = "x"\n' + BASE), "sid")
    assert problem.line == 1
    assert (
        problem.message == "unknown key 'sid' outside any table (did you mean 'ssid' in [brand]?)"
    )


def test_missing_brand(tmp_path: Path) -> None:
    text = BASE.split("[[operators]]", 1)[1]
    problem = only(problems_for(tmp_path, "[[operators]]" + text), "brand")
    assert problem.line is None
    assert "missing required table [brand]" in problem.message


def test_overlapping_client_networks_name_both(tmp_path: Path) -> None:
    extra = (
        '\n[[clients]]\nid = "c2"\naddress = "10.0.0.128/25"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n'
    )
    problem = only(problems_for(tmp_path, BASE + extra), "clients[1].address")
    assert "'c1'" in problem.message and "'c2'" in problem.message
    assert problem.line == line_of(BASE + extra, "10.0.0.128/25")


def test_overlap_reported_even_when_the_client_has_other_problems(tmp_path: Path) -> None:
    extra = '\n[[clients]]\nid = "c2"\naddress = "10.0.0.9"\nsecret = ""\nvenue = "v1"\n'
    problems = problems_for(tmp_path, BASE + extra)
    assert {p.key for p in problems} == {"clients[1].address", "clients[1].secret"}


def test_disjoint_and_mixed_family_networks_are_fine(tmp_path: Path) -> None:
    extra = "".join(
        f'\n[[clients]]\nid = "n{i}"\naddress = "{addr}"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n'
        for i, addr in enumerate(["10.0.1.0/24", "10.1.0.0/16", "::1", "fd00::/64"])
    )
    assert problems_for(tmp_path, BASE + extra) == []


def test_nas_identifier_must_be_unambiguous(tmp_path: Path) -> None:
    extra = (
        '\n[[clients]]\nid = "c2"\naddress = "10.9.0.0/24"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\n'
        'venue = "v1"\n'
        'nas_identifier = "c1"\n'
    )
    problem = only(problems_for(tmp_path, BASE + extra), "clients[1].nas_identifier")
    assert "also the id of the client" in problem.message


def test_reference_to_a_broken_entry_is_not_reported_twice(tmp_path: Path) -> None:
    """A venue with a bad type is still 'declared': its clients don't add noise."""
    text = BASE.replace('type = "hospital"', 'type = "hospitel"')
    problems = problems_for(tmp_path, text)
    assert [p.key for p in problems] == ["venues[0].type"]
    assert "did you mean 'hospital'?" in problems[0].message


def test_many_problems_reported_at_once_in_file_order(tmp_path: Path) -> None:
    text = (
        BASE.replace('secret = "s3cret-Nq7vWk2pLx9z"', 'secret = ""')
        + '\n[quota]\ntimezone = "Mars/Olympus"\nmax_devices = 0\n'
        + '\n[redis]\nappendfsync = "sometimes"\n'
    )
    problems = problems_for(tmp_path, text)
    assert [p.key for p in problems] == [
        "clients[0].secret",
        "quota.timezone",
        "quota.max_devices",
        "redis.appendfsync",
    ]
    lines = [p.line for p in problems]
    assert lines == sorted(lines) and None not in lines
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert info.value.problems == problems
    assert str(info.value).startswith("4 problems in the configuration\n")
    assert str(problems[1]) in str(info.value)


def test_wrong_shapes(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, "quota = 5\n" + BASE.replace("[[clients]]", "[clients]"))
    keys = {p.key: p for p in problems}
    assert "expected a table [quota]" in keys["quota"].message
    assert "array of tables [[clients]]" in keys["clients"].message
    assert keys["quota"].line == 1


# ----------------------------------------------------------------------------- file-level


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    text = BASE + "\n[quota]\ndaily_seconds = \n"
    (problem,) = problems_for(tmp_path, text)
    assert problem.line == BASE.count("\n") + 3
    assert problem.message.startswith("TOML syntax error: Invalid value")
    assert problem.key == ""
    assert str(problem) == f"{tmp_path / 'citywifi.toml'}:{problem.line}: {problem.message}"


def test_unreadable_file(tmp_path: Path) -> None:
    (problem,) = check_config(tmp_path / "absent.toml", environ={})
    assert problem.file == tmp_path / "absent.toml"
    assert problem.line is None
    assert "cannot read config file" in problem.message
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.toml", environ={})


def test_problem_str_format() -> None:
    with_line = ConfigProblem(Path("deploy/c.toml"), 12, "quota.timezone", "bad")
    assert str(with_line) == "deploy/c.toml:12: quota.timezone: bad"
    without = ConfigProblem(Path("deploy/c.toml"), None, "brand", "missing")
    assert str(without) == "deploy/c.toml: brand: missing"


# ----------------------------------------------------------------------------- environment


def test_env_overrides_redis_url(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '\n[redis]\nurl = "redis://file:6379/0"\n')
    assert load_config(path, environ={}).redis.url == "redis://file:6379/0"
    assert load_config(path, environ={"CITYWIFI_REDIS_URL": ""}).redis.url == "redis://file:6379/0"
    env = {"CITYWIFI_REDIS_URL": "redis://env:6380/1"}
    assert load_config(path, environ=env).redis.url == "redis://env:6380/1"
    (problem,) = check_config(path, environ={"CITYWIFI_REDIS_URL": "env:6380"})
    assert problem.key == "redis.url" and "CITYWIFI_REDIS_URL" in problem.message


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYWIFI_REDIS_URL", "redis://from-os:6379/0")
    assert load_config(write(tmp_path, BASE)).redis.url == "redis://from-os:6379/0"


# ----------------------------------------------------------------------------- CSV registries

REGISTRY = '\n[registry]\nvenues_csv = "venues.csv"\naccess_points_csv = "aps.csv"\n'
VENUES_HEADER = "id,name_zh,name_en,type,district,operator\n"


def test_csv_registries_merge(tmp_path: Path) -> None:
    (tmp_path / "venues.csv").write_text(
        "\ufeff" + VENUES_HEADER + "v2,二号,Venue Two,university,裕华区,op-a\n\n"
        'v3,"三号, 北",,community,长安区,op-a\n',
        encoding="utf-8",
    )
    (tmp_path / "aps.csv").write_text("match,venue\nAA:BB:CC:00:00:01,v2\nnas-7,v1\n")
    config = load_config(write(tmp_path, BASE + REGISTRY), environ={})
    assert set(config.venues) == {"v1", "v2", "v3"}
    assert config.venues["v3"].name == {"zh": "三号, 北", "en": "三号, 北"}
    assert config.venues["v2"].type == "university"
    assert dict(config.access_points) == {
        "AA-BB-CC-00-00-01": config.access_points["AA-BB-CC-00-00-01"],
        "nas-7": config.access_points["nas-7"],
    }
    assert config.access_points["AA-BB-CC-00-00-01"].venue == "v2"


def test_csv_row_problems_name_the_csv_file_and_line(tmp_path: Path) -> None:
    venues = tmp_path / "venues.csv"
    venues.write_text(
        VENUES_HEADER
        + "v2,二号,Venue Two,university,裕华区,op-a\n"
        + "\n"
        + "v3,三号,Venue Three,airport,长安区,op-a\n"  # line 4: bad type
        + "v1,重复,Duplicate,hospital,长安区,op-a\n"  # line 5: duplicates the TOML venue
        + "v4,四号,Venue Four,hospital,长安区,op-x\n"  # line 6: unknown operator
        + "v5,,,hospital,,op-a\n",  # line 7: no name, no district
        encoding="utf-8",
    )
    (tmp_path / "aps.csv").write_text("match,venue\n00-11-22-33-44-55,v2\n001122334455,v9\n")
    problems = problems_for(tmp_path, BASE + REGISTRY)
    got = {(p.file.name, p.line, p.key) for p in problems}
    assert got == {
        ("venues.csv", 4, "type"),
        ("venues.csv", 5, "id"),
        ("venues.csv", 6, "operator"),
        ("venues.csv", 7, "name_zh"),
        ("venues.csv", 7, "district"),
        ("aps.csv", 3, "match"),
        ("aps.csv", 3, "venue"),
    }
    dup = next(p for p in problems if p.key == "id")
    assert "duplicate venue id 'v1'" in dup.message
    assert f"citywifi.toml:{line_of(BASE, '[[venues]]')}" in dup.message
    assert str(dup).startswith(f"{venues}:5: id: ")


def test_duplicate_between_toml_and_csv_access_points(tmp_path: Path) -> None:
    (tmp_path / "aps.csv").write_text("match,venue\naa-bb-cc-dd-ee-ff,v1\n")
    text = (
        BASE
        + '\n[registry]\naccess_points_csv = "aps.csv"\n'
        + '\n[[access_points]]\nmatch = "AABB.CCDD.EEFF"\nvenue = "v1"\n'
    )
    (problem,) = problems_for(tmp_path, text)
    assert (problem.file.name, problem.line, problem.key) == ("aps.csv", 2, "match")
    assert "first defined at" in problem.message and "access_points[0]" in problem.message


def test_csv_missing_file_and_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "venues.csv").write_text("id,name_zh,name_en,typ,district\nv2,a,b,hospital,d\n")
    problems = problems_for(tmp_path, BASE + REGISTRY)
    by_file = {p.file.name: p for p in problems if p.key != "header" or "missing" in p.message}
    missing_cols = by_file["venues.csv"]
    assert missing_cols.line == 1
    assert "missing column(s) type, operator" in missing_cols.message
    typo = next(p for p in problems if "unknown column" in p.message)
    assert "did you mean 'type'?" in typo.message
    absent = by_file["aps.csv"]
    assert absent.file == tmp_path / "aps.csv"
    assert absent.key == "registry.access_points_csv"
    assert "cannot read CSV file" in absent.message
    assert f"citywifi.toml:{line_of(BASE + REGISTRY, 'access_points_csv')}" in absent.message


# ----------------------------------------------------------------------------- line locator


def test_lines_for_inline_tables_dotted_keys_and_multiline_values(tmp_path: Path) -> None:
    text = BASE + (
        '\n[sms]\nbackend = "file"\nwebhook_headers.X-One = "1"\nwebhook_headers.X-Two = 2\n'
        '\n[[api_tokens]]\nname = """tok\nen"""\n'
        f'sha256 = "{"c" * 64}"\nroles = [\n  "reports",\n  # a comment ] with a bracket\n'
        '  "superuser",\n]\n'
    )
    problems = problems_for(tmp_path, text)
    headers = only(problems, "sms.webhook_headers.X-Two")
    assert headers.line == line_of(text, "X-Two")
    token_name = only(problems, "api_tokens[0].name")  # newline in a name: not a valid id
    assert token_name.line == line_of(text, 'name = """tok')
    role = only(problems, "api_tokens[0].roles[1]")
    assert role.line == line_of(text, '"superuser"')


# ------------------------------------------------------------ issue 13: portal security keys

CLIENT = (
    '\n[[clients]]\nid = "c2"\naddress = "10.9.0.1"\nsecret = "Xk9-vQ2mZr7pL4sT"\nvenue = "v1"\n'
)
SECURITY_CASES = [
    (CLIENT + 'vendor = "generic"\nlogin_url = "javascript:alert(1)"\n', "clients[1].login_url",
     "login_url", "not an http:// or https:// URL"),
    (CLIENT + 'vendor = "chilli"\nlogin_url = "http://10.9.0.1/login"\n', "clients[1].login_url",
     "login_url", 'only used with vendor = "generic"'),
    (CLIENT + 'vendor = "mikrotik"\nlogin_hosts = ["https://10.9.0.1/login"]\n',
     "clients[1].login_hosts[0]", "login_hosts", "not a host name or IP address"),
    (CLIENT + 'vendor = "mikrotik"\nlogin_hosts = "10.9.0.1"\n', "clients[1].login_hosts",
     "login_hosts", "expected an array of strings"),
    (CLIENT + 'vendor = "generic"\nlogin_hosts = ["10.9.0.1"]\n', "clients[1].login_hosts",
     "login_hosts", 'only used with vendor = "mikrotik"'),
    (CLIENT + 'vendor = "chilli"\nuam_addresses = ["10.9.0.300"]\n', "clients[1].uam_addresses[0]",
     "uam_addresses", "not an IP address or CIDR"),
    ('\n[sms]\nallowed_country_codes = ["+86", "+999"]\n', "sms.allowed_country_codes[1]",
     "allowed_country_codes", "'+999' is not a country calling code"),
    ("\n[sms]\nallowed_country_codes = []\n", "sms.allowed_country_codes",
     "allowed_country_codes", "at least one code"),
    ("\n[portal]\notp_per_phone_ceiling_day = 5\n", "portal.otp_per_phone_ceiling_day",
     "otp_per_phone_ceiling_day", "must be at least otp_per_phone_day (10)"),
    ("\n[portal]\nverify_per_ip_hour = 0\n", "portal.verify_per_ip_hour", "verify_per_ip_hour",
     "at least 1"),
    ('\n[portal]\npage_per_ip_minute = "lots"\n', "portal.page_per_ip_minute",
     "page_per_ip_minute", "expected an integer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "key", "needle", "words"), SECURITY_CASES, ids=[c[1] for c in SECURITY_CASES]
)
def test_portal_security_keys_are_checked(
    tmp_path: Path, extra: str, key: str, needle: str, words: str
) -> None:
    text = BASE + extra
    problem = only(problems_for(tmp_path, text), key)
    assert problem.line == line_of(text, needle, -1) and words in problem.message, str(problem)


def test_brand_home_url_is_an_http_url(tmp_path: Path) -> None:
    text = BASE.replace('name = "Test WiFi"\n', 'name = "Test WiFi"\nhome_url = "data:x"\n')
    problem = only(problems_for(tmp_path, text), "brand.home_url")
    assert problem.line == line_of(text, "home_url") and "http://" in problem.message


def test_portal_security_keys_load(tmp_path: Path) -> None:
    text = (
        BASE
        + CLIENT
        + (
            'vendor = "mikrotik"\nlogin_hosts = ["10.9.0.254", "HotSpot.Example"]\n'
            '\n[sms]\nallowed_country_codes = ["+86", "852"]\n'
        )
    )
    config = load_config(write(tmp_path, text), environ={})
    assert config.clients[1].login_hosts == ("10.9.0.254", "hotspot.example")
    assert config.sms.allowed_country_codes == ("+86", "+852")
    assert config.clients[0].uam_addresses == () and config.brand.home_url == ""


@pytest.mark.parametrize(
    ("value", "size"),
    [('"512mb"', 512 << 20), ('"4GB"', 4 << 30), ("2147483648", 1 << 31), ('"0"', 0), ("0", 0)],
)
def test_redis_maxmemory_forms(tmp_path: Path, value: str, size: int) -> None:
    config = load_config(write(tmp_path, BASE + f"\n[redis]\nmaxmemory = {value}\n"), environ={})
    assert config.redis.maxmemory == size
    assert load_config(write(tmp_path, BASE), environ={}).redis.maxmemory == 1 << 30


# ----------------------------------------------------------- placeholder and weak secrets


def test_placeholder_short_and_example_secrets_are_errors_with_file_line(tmp_path: Path) -> None:
    token = hashlib.sha256(b"change-me-reports-token").hexdigest()
    text = (
        BASE.replace('secret = "s3cret-Nq7vWk2pLx9z"', 'secret = "CHANGE-ME-airport-secret"')
        + '\n[[clients]]\nid = "c2"\naddress = "10.1.0.0/24"\nsecret = "short-one"\nvenue = "v1"\n'
        + 'uam_secret = "your-example-uam"\n'
        + '\n[[clients]]\nid = "c3"\naddress = "10.2.0.0/24"\nsecret = "testing123"\nvenue = "v1"\n'
        + '\n[[clients]]\nid = "c4"\naddress = "10.3.0.0/24"\nsecret = "aaaaaaaaaaaaaaaaaaaa"\n'
        + 'venue = "v1"\n'
        + f'\n[[api_tokens]]\nname = "bureau"\nsha256 = "{token}"\nroles = ["reports"]\n'
        + '\n[security]\nperson_key = "CHANGE-ME-person-key-32-random-chars"\n'
        + '\n[portal]\ncookie_key = "changeme"\n'
        + '\n[redis]\nurl = "redis://:CHANGE-ME@10.0.0.9:6379/0"\n'
        + '\n[sms]\nbackend = "webhook"\nwebhook_url = "https://sms.example.cn/send"\n'
        + 'webhook_headers = { Authorization = "Bearer CHANGE-ME" }\n'
    )
    problems = problems_for(tmp_path, text)
    want = {
        "clients[0].secret": ('secret = "CHANGE-ME', "placeholder"),
        "clients[1].secret": ('secret = "short-one"', "at least 16 characters, got 9"),
        "clients[1].uam_secret": ("uam_secret", "placeholder, not a secret"),
        "clients[2].secret": ('secret = "testing123"', "FreeRADIUS's well-known"),
        "clients[3].secret": ('secret = "aaaa', "only 1 distinct characters"),
        "api_tokens[0].sha256": ("sha256 =", "published example token"),
        "security.person_key": ("person_key", "placeholder"),
        "portal.cookie_key": ("cookie_key", "placeholder"),
        "redis.url": ("url = ", "the password is a placeholder"),
        "sms.webhook_headers.Authorization": ("webhook_headers", "placeholder"),
    }
    for key, (needle, reason) in want.items():
        problem = only(problems, key)
        assert problem.line == line_of(text, needle), (key, problem)
        assert reason in problem.message and not problem.warning, (key, problem)
        assert str(problem).startswith(f"{problem.file}:{problem.line}: {key}: ")
    # a reason never repeats the secret itself, nor a word of it
    for secret in ("short-one", "change-me", "changeme", "testing123", "example", "aaaa"):
        # (the published token is named: it is public, and that is the point)
        told = [p.message.lower() for p in problems if not p.key.startswith("api_tokens")]
        assert not any(secret in message for message in told), secret


def test_a_weak_secret_on_a_loopback_only_client_is_a_warning(tmp_path: Path) -> None:
    text = BASE + (
        '\n[[clients]]\nid = "local"\naddress = "127.0.0.0/8"\nsecret = "testing123"\n'
        'venue = "v1"\n\n[[clients]]\nid = "local6"\naddress = "::1"\nsecret = "change-me"\n'
        'venue = "v1"\n'
    )
    path = write(tmp_path, text)
    assert check_config(path, environ={}) == []  # accepted: serve starts
    config = load_config(path, environ={})
    assert [(w.key, w.warning) for w in config.warnings] == [
        ("clients[1].secret", True),
        ("clients[2].secret", True),
    ]
    assert [w.line for w in config.warnings] == [
        line_of(text, 'secret = "testing123"'),
        line_of(text, 'secret = "change-me"'),
    ]
    assert "warning: " in str(config.warnings[0]) and "loopback-only" in str(config.warnings[0])
    assert check_config(path, environ={}, warnings=True) == list(config.warnings)


def test_redis_startup_wait(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE + "\n[redis]\nstartup_wait = 5\n"), environ={})
    assert config.redis.startup_wait == 5.0
    assert load_config(write(tmp_path, BASE), environ={}).redis.startup_wait == 30.0
    text = BASE + "\n[redis]\nstartup_wait = -1\n"
    problem = only(problems_for(tmp_path, text), "redis.startup_wait")
    assert problem.line == line_of(text, "startup_wait") and "at least 0" in problem.message


# ------------------------------------------------------- the schema's errors in our words

PYDANTIC_ENGLISH = ("Input should", "Field required", "Value error", "Extra inputs", "Assertion")


def _bounded_fields() -> list[tuple[str, str, str]]:
    """(section, key, an out-of-range TOML value) for every bounded setting of the schema
    (pydantic keeps ``Field(ge=…)`` etc. as metadata objects with that attribute)."""
    from controller.config.schema import SECTIONS

    out = []
    for section, model in SECTIONS.items():
        for key, info in model.model_fields.items():
            bounds = {name: getattr(m, name) for m in info.metadata for name in
                      ("ge", "gt", "le", "lt") if hasattr(m, name)}  # fmt: skip
            low = bounds.get("ge", bounds.get("gt"))
            if low is not None:
                out.append((section, key, repr(low - 1)))
            high = bounds.get("le", bounds.get("lt"))
            if high is not None:
                out.append((section, key, repr(high + 1)))
    return out


@pytest.mark.parametrize(("section", "key", "value"), _bounded_fields())
def test_every_bound_is_said_in_our_words(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    """A new bounded setting needs no new wording: its Field bounds are the message."""
    text = BASE + f"\n[{section}]\n{key} = {value}\n"
    problem = only(problems_for(tmp_path, text), f"{section}.{key}")
    assert problem.message.startswith("must be ") and f", got {value}" in problem.message
    assert problem.line == line_of(text, f"{key} = ", -1)


WRONG = "1979-05-27T07:32:00Z"  # a TOML date-time: no setting takes one
ENTRY = {
    "operators": 'id = "op-w"\nname = "W"\n',
    "venues": 'id = "v-w"\nname = "W"\ntype = "hospital"\ndistrict = "d"\noperator = "op-a"\n',
    "clients": 'id = "c-w"\naddress = "10.7.0.0/24"\nsecret = "nas-Rt5mQ8wZ2kLp9v"\nvenue = "v1"\n',
    "access_points": 'match = "ap-w"\nvenue = "v1"\n',
    "api_tokens": f'name = "t-w"\nsha256 = "{"d" * 64}"\nroles = ["audit"]\n',
}


def _every_key() -> list[tuple[str, str, bool]]:
    from controller.config.schema import LISTS, SECTIONS

    return [(s, k, False) for s, m in SECTIONS.items() for k in m.model_fields] + [
        (s, k, True) for s, m in LISTS.items() for k in m.model_fields
    ]


@pytest.mark.parametrize(("name", "key", "entry"), _every_key())
def test_a_wrong_type_anywhere_is_said_in_our_words(
    tmp_path: Path, name: str, key: str, entry: bool
) -> None:
    """Every key of the schema, given a value of the wrong type: one problem on that key,
    in check-config's words, never the library's."""
    wrong = '"soon"' if key == "expires" else WRONG  # a date-time is the right type there
    if entry:
        lines = [ln for ln in ENTRY[name].splitlines() if not ln.startswith(f"{key} =")]
        text = BASE + f"\n[[{name}]]\n" + "\n".join(lines) + f"\n{key} = {wrong}\n"
        index = text.count(f"[[{name}]]") - 1
        where = f"{name}[{index}].{key}"
    elif name == "brand":  # BASE has one already
        kept = [ln for ln in BASE.splitlines(keepends=True) if not ln.startswith(f"{key} =")]
        text = "".join(kept).replace("[brand]\n", f"[brand]\n{key} = {wrong}\n")
        where = f"{name}.{key}"
    else:
        text = BASE + f"\n[{name}]\n{key} = {wrong}\n"
        where = f"{name}.{key}"
    problems = problems_for(tmp_path, text)
    problem = only(problems, where)
    assert problem.line == line_of(text, f"{key} = {wrong}")
    for p in problems:
        assert not any(words in p.message for words in PYDANTIC_ENGLISH), str(p)
