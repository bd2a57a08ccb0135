"""The HTTP side: ``make_app`` (the citizen listener) and ``make_metrics_app``, the
connection guard (``http_edge``), one typed ``AppKey`` per resource (``resources``),
bearer tokens and roles (``auth``), and the routes of each feature: ``portal``,
``reports`` (+ ``reports_page``), ``audit``, ``admin``. Depends on ``services`` and
below; never on ``cli``."""
