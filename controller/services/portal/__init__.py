"""The captive portal's flows, free of HTTP: SMS codes (``otp``, ``sms``), rate limits
(``ratelimit``), the hand-off of a credential to the NAS per vendor (``handoff``), signed
tokens (``signing``), languages (``i18n``) and the flows themselves (``service``). The
pages and the JSON API are ``controller.web.portal`` (docs/portal.md)."""
