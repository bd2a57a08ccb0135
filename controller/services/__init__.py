"""Services: the work the controller does, each built with the resources it needs passed
in (no locator): the RADIUS service, the quota enforcer's loop, the archiver, the portal,
reports, the audit export, admin actions, logins, the Redis-backed metrics. Depends on
``domain``, ``storage``, ``config`` and ``radius``; never on ``web`` or ``cli``."""
