"""The configuration: one typed, frozen ``Config`` built once from a TOML file (+ CSV
registries) and passed down (docs/configuration.md).

- ``model``: the dataclasses (what the rest of the code reads);
- ``schema``: the file's pydantic models (bounds, choices, checks between keys);
  ``wording``: pydantic's errors in our words; ``checks``: secret strength, patterns;
- ``loader``: ``load_config`` / ``check_config``, the checks across entries, the build;
- ``registry_csv``: the CSV registries' rows; ``locator``: the TOML line of each key;
  ``problems``: the ``file:line: key: reason`` problems;
- ``redis_url``: the grammar of ``redis.url``; ``reload``: what a SIGHUP may change.

Every layer may import this package; it imports only ``domain`` (MAC notation, venue
types) and ``radius`` (the DAE retry schedule) below it.
"""

from controller.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    REDIS_URL_ENV,
    check_config,
    config_path,
    load_config,
)
from controller.config.model import (
    ROLES,
    VENDORS,
    AccessPoint,
    ApiToken,
    AuditSettings,
    Brand,
    Client,
    Config,
    EnforcerSettings,
    HttpSettings,
    IPNetwork,
    LogSettings,
    Operator,
    PortalSettings,
    PrivacySettings,
    QuotaPolicy,
    RadiusSettings,
    RedisSettings,
    ReportSettings,
    SecuritySettings,
    SmsSettings,
    Subsidy,
    Venue,
)
from controller.config.problems import ConfigError, ConfigProblem

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "REDIS_URL_ENV",
    "ROLES",
    "VENDORS",
    "AccessPoint",
    "ApiToken",
    "AuditSettings",
    "Brand",
    "Client",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "EnforcerSettings",
    "HttpSettings",
    "IPNetwork",
    "LogSettings",
    "Operator",
    "PortalSettings",
    "PrivacySettings",
    "QuotaPolicy",
    "RadiusSettings",
    "RedisSettings",
    "ReportSettings",
    "SecuritySettings",
    "SmsSettings",
    "Subsidy",
    "Venue",
    "check_config",
    "config_path",
    "load_config",
]
