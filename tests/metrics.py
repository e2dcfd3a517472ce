"""Prometheus metrics of a running master or worker process, as tests read them."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def metrics_text(port: object, host: str = "127.0.0.1", timeout: float = 5.0) -> str:
    """The text a process's ``/metrics`` endpoint serves."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as reply:
        return str(reply.read().decode())


def metric_samples(port: object, host: str = "127.0.0.1") -> list[Sample]:
    """Every sample a process's ``/metrics`` endpoint serves."""
    families = text_string_to_metric_families(metrics_text(port, host))
    return [sample for family in families for sample in family.samples]
