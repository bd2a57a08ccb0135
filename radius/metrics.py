"""Prometheus metrics of the RADIUS side. Labels are bounded (ports, codes, reasons)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "citywifi_radius_requests_total",
    "RADIUS requests handled, by port, request type and result",
    ["port", "type", "result"],
)
DROPPED = Counter(
    "citywifi_radius_dropped_total",
    "RADIUS packets dropped without an answer, by port and reason",
    ["port", "reason"],
)
LATENCY = Histogram(
    "citywifi_radius_request_seconds",
    "Time from receiving a RADIUS request to sending its answer",
    ["port"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CLIENT_REQUESTS = Counter(
    "citywifi_radius_client_requests_total",
    "RADIUS requests answered, by client (NAS) id, port and result (accept, reject, ok): "
    "a silent NAS stops moving it",
    ["client", "port", "result"],
)
REJECTS = Counter(
    "citywifi_radius_rejects_total",
    "Access-Rejects by reason (controller.domain.access.Outcome: exhausted, device_limit, blocked, "
    "bad_password, credential_used, ...): 'exhausted' is the allowance-used-up reject",
    ["reason"],
)
