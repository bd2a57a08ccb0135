"""The operations console (issue 17): named accounts sign in at ``/console/login`` and
see the city live. Routes: ``routes``; the one place that touches sessions, CSRF and
roles: ``guard``; the templates (``portal_pages/console``): ``pages``."""
