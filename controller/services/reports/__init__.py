"""Subsidy reports: the usage ledger (controller.archive) aggregated per day and venue,
priced with the city's method in exact decimals, and served as CSV / JSON / XLSX with a
digest of their figures (API, CLI), plus a small page for the IT bureau.

Modules: ``query`` (requests and DuckDB aggregation), ``subsidy`` (the pricing method and
the report's rows), ``writers`` (formats and digest), ``charts`` (SVG), ``auth`` (bearer
tokens and the page's session cookie), ``http`` (routes), ``cli`` (``citywifi report``).
"""
