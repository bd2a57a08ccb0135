"""The captive portal over HTTP: pages (plain HTML forms, JS optional), the JSON API, the
RFC 8908 Captive Portal API and venue pages (``routes``), their rendering (``pages``),
CSRF tokens, the client's address through trusted proxies. The flows are
``controller.services.portal`` (docs/portal.md)."""
