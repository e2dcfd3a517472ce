"""Prometheus metrics of the master, registered only into the registry it is given.

* ``cachecluster_master_workers{state}``: workers by state (active, suspect, lost);
* ``cachecluster_master_ring_epoch`` and ``..._epoch_changes_total``;
* ``cachecluster_master_datasets``, ``..._mounts``, ``..._reported_blocks``;
* ``cachecluster_master_metadata_{listing,stat}_{hits,misses}_total``,
  ``..._metadata_ufs_errors_total``;
* ``cachecluster_master_rpcs_total{method,code}`` and
  ``cachecluster_master_rpc_duration_seconds{method}``, counted by
  :class:`RpcMetricsInterceptor` for every gRPC call.

Values owned by other objects (membership, caches) are read at scrape time
by a collector, so the hot paths only bump plain integers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.membership import Membership, WorkerState
from cachecluster.master.metadata import MetadataCache

_PREFIX = "cachecluster_master"
_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class _StateCollector(Collector):
    """Reads membership, datasets and metadata counters at scrape time."""

    def __init__(
        self, membership: Membership, datasets: DatasetRegistry, metadata: MetadataCache
    ) -> None:
        self._membership = membership
        self._datasets = datasets
        self._metadata = metadata

    def collect(self) -> Iterator[Metric]:
        membership = self._membership
        workers = GaugeMetricFamily(
            f"{_PREFIX}_workers", "Workers known to the master, by state", labels=["state"]
        )
        for state in WorkerState:
            workers.add_metric([state.value], membership.count_in_state(state))
        yield workers
        yield GaugeMetricFamily(
            f"{_PREFIX}_ring_epoch", "Current membership epoch", value=membership.epoch
        )
        yield CounterMetricFamily(
            f"{_PREFIX}_epoch_changes",
            "Membership changes since start",
            value=membership.epoch_changes,
        )
        yield GaugeMetricFamily(
            f"{_PREFIX}_reported_blocks",
            "Blocks the workers on the ring report holding (replicas counted)",
            value=sum(record.block_count for record in membership.ring_members()),
        )
        yield GaugeMetricFamily(
            f"{_PREFIX}_datasets", "Registered datasets", value=len(self._datasets.datasets())
        )
        yield GaugeMetricFamily(
            f"{_PREFIX}_mounts", "Mounts of registered datasets", value=len(self._datasets.mounts())
        )
        counters = self._metadata.counters
        for name, value, text in (
            ("listing_hits", counters.listing_hits, "Directory listings served from the cache"),
            ("listing_misses", counters.listing_misses, "Directory listings fetched from the UFS"),
            ("stat_hits", counters.stat_hits, "File stats served from the cache"),
            ("stat_misses", counters.stat_misses, "File stats fetched from the UFS"),
            ("ufs_errors", counters.ufs_errors, "UFS calls of the metadata cache that failed"),
        ):
            yield CounterMetricFamily(f"{_PREFIX}_metadata_{name}", text, value=value)


class MasterMetrics:
    """The master's metrics in ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        membership: Membership,
        datasets: DatasetRegistry,
        metadata: MetadataCache,
    ) -> None:
        self.registry = registry
        registry.register(_StateCollector(membership, datasets, metadata))
        self.rpcs = Counter(
            f"{_PREFIX}_rpcs",
            "gRPC calls served, by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.rpc_duration = Histogram(
            f"{_PREFIX}_rpc_duration_seconds",
            "Time to serve a gRPC call, by method",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=registry,
        )

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """Count one finished call."""
        self.rpcs.labels(method=method, code=code).inc()
        self.rpc_duration.labels(method=method).observe(seconds)


def _code_name(context: Any, failed: bool) -> str:
    code = None
    try:
        code = context.code()
    except Exception:  # pragma: no cover - older grpc without ServicerContext.code()
        code = None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if failed else "OK"


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times unary-response calls (unary and client-streaming)."""

    def __init__(self, metrics: MasterMetrics) -> None:
        self._metrics = metrics

    def _timed(
        self, method: str, behaviour: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        metrics = self._metrics

        async def timed(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            failed = True
            try:
                response = await behaviour(request, context)
                failed = False
                return response
            finally:
                metrics.observe_rpc(
                    method, _code_name(context, failed), time.perf_counter() - start
                )

        return timed

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method).rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._timed(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._timed(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
