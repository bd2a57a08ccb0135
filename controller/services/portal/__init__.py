"""The captive portal's flows, free of HTTP: SMS codes (``otp``, ``sms``), rate limits
(``ratelimit``), the hand-off of a credential to the NAS per vendor (``handoff``),
languages (``i18n``) and the flows themselves (``service``); its tokens are signed by
``controller.services.signing``. The pages and the JSON API are
``controller.web.portal`` (docs/portal.md)."""
