"""Prometheus metrics of the worker's block store.

:class:`WorkerMetrics` registers its collectors only into the
``CollectorRegistry`` it is given (never the global default registry), so
several workers and many tests can live in one process. The worker's HTTP
endpoint serves that registry.

Every name starts with ``cachecluster_worker_``. Per-tier series carry a
``medium`` label (``MEM``, ``SSD``, ``HDD``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cachecluster.worker.tiers import Medium

if TYPE_CHECKING:
    from cachecluster.worker.data_server import DataServerStats
    from cachecluster.worker.mounts import MountResolver

PREFIX = "cachecluster_worker"

LOAD_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Buckets for block loads: 4 MiB from a local UFS takes ~1 ms, from OSS ~50-500 ms."""


class WorkerMetrics:
    """The block store's counters, gauges and load-latency histogram.

    Attributes are the prometheus collectors themselves, for code that wants
    them; the ``record_*``/``set_*`` methods are what the store calls.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.hits = Counter(
            f"{PREFIX}_block_hits",
            "Block reads served from a tier, by the tier that held the block.",
            ["medium"],
            registry=registry,
        )
        self.misses = Counter(
            f"{PREFIX}_block_misses",
            "Block reads that found the block in no tier.",
            registry=registry,
        )
        self.bytes_served = Counter(
            f"{PREFIX}_bytes_served",
            "Bytes of blocks handed to readers (hits and loaded misses).",
            registry=registry,
        )
        self.bytes_fetched = Counter(
            f"{PREFIX}_bytes_fetched",
            "Bytes read from the UFS by block loaders.",
            registry=registry,
        )
        self.ufs_reads = Counter(
            f"{PREFIX}_ufs_reads",
            "UFS read requests for blocks: of one block, or of a run of consecutive blocks.",
            ["kind"],
            registry=registry,
        )
        self.load_errors = Counter(
            f"{PREFIX}_block_load_errors",
            "Block loads (UFS fetches) that failed.",
            registry=registry,
        )
        self.evictions = Counter(
            f"{PREFIX}_evictions",
            "Blocks evicted from a tier (demoted or deleted), by the tier they left.",
            ["medium"],
            registry=registry,
        )
        self.demotions = Counter(
            f"{PREFIX}_demotions",
            "Evicted blocks moved down to the next tier, by the tier they left.",
            ["medium"],
            registry=registry,
        )
        self.promotions = Counter(
            f"{PREFIX}_promotions",
            "Blocks moved up to the top tier after a hit, by the tier they left.",
            ["medium"],
            registry=registry,
        )
        self.checksum_failures = Counter(
            f"{PREFIX}_checksum_failures",
            "Block files that failed their checksum or header check, by tier.",
            ["medium"],
            registry=registry,
        )
        self.tier_used_bytes = Gauge(
            f"{PREFIX}_tier_used_bytes",
            "Bytes used on a tier: block files plus reservations for writes in progress.",
            ["medium"],
            registry=registry,
        )
        self.tier_capacity_bytes = Gauge(
            f"{PREFIX}_tier_capacity_bytes",
            "The quota of a tier in bytes.",
            ["medium"],
            registry=registry,
        )
        self.tier_blocks = Gauge(
            f"{PREFIX}_tier_blocks",
            "Blocks stored on a tier.",
            ["medium"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            f"{PREFIX}_block_load_seconds",
            "Time to load one missing block (the loader call, usually a UFS range read).",
            buckets=LOAD_SECONDS_BUCKETS,
            registry=registry,
        )

    def record_hit(self, medium: Medium, nbytes: int) -> None:
        """A read found its block on ``medium`` and was served ``nbytes``."""
        self.hits.labels(medium.value).inc()
        self.bytes_served.inc(nbytes)

    def record_miss(self) -> None:
        """A read found its block in no tier."""
        self.misses.inc()

    def record_served(self, nbytes: int) -> None:
        """A missed read was served ``nbytes`` once its block was loaded."""
        self.bytes_served.inc(nbytes)

    def record_load(self, nbytes: int, seconds: float) -> None:
        """A loader fetched ``nbytes`` in ``seconds``."""
        self.bytes_fetched.inc(nbytes)
        self.load_seconds.observe(seconds)

    def record_ufs_read(self, run: bool) -> None:
        """One UFS read request went out: for a run of consecutive blocks, or for one block."""
        self.ufs_reads.labels("run" if run else "block").inc()

    def record_load_error(self, seconds: float) -> None:
        """A loader failed after ``seconds``."""
        self.load_errors.inc()
        self.load_seconds.observe(seconds)

    def record_eviction(self, medium: Medium, demoted: bool) -> None:
        """A block left ``medium`` to free space; ``demoted`` when it moved down a tier."""
        self.evictions.labels(medium.value).inc()
        if demoted:
            self.demotions.labels(medium.value).inc()

    def record_promotion(self, from_medium: Medium) -> None:
        """A block moved from ``from_medium`` up to the top tier."""
        self.promotions.labels(from_medium.value).inc()

    def record_checksum_failure(self, medium: Medium) -> None:
        """A block file on ``medium`` was found corrupt and dropped."""
        self.checksum_failures.labels(medium.value).inc()

    def set_tier_capacity(self, medium: Medium, quota: int) -> None:
        """Publish a tier's quota."""
        self.tier_capacity_bytes.labels(medium.value).set(quota)

    def set_tier_usage(self, medium: Medium, used: int, blocks: int) -> None:
        """Publish a tier's used bytes and block count."""
        self.tier_used_bytes.labels(medium.value).set(used)
        self.tier_blocks.labels(medium.value).set(blocks)


class DataServerCollector:
    """Exports a data server's counters (``DataServerStats``) when the registry is scraped.

    Register it with ``registry.register(DataServerCollector(server.stats))``.
    """

    _COUNTERS = (
        ("connections_accepted", "Data connections accepted."),
        ("connections_failed", "Data connections closed by an error (bad frame, reset)."),
        ("requests", "Data requests received (reads and pings)."),
        ("bytes_sent", "Block bytes sent to readers."),
        ("errors", "Error responses sent to readers."),
    )

    def __init__(self, stats: DataServerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """One counter family per counter, plus the open connections gauge."""
        for name, help_text in self._COUNTERS:
            family = CounterMetricFamily(f"{PREFIX}_data_{name}", help_text)
            family.add_metric([], float(getattr(self.stats, name)))
            yield family
        open_now = GaugeMetricFamily(
            f"{PREFIX}_data_connections_open", "Data connections open now."
        )
        open_now.add_metric([], float(self.stats.connections_open))
        yield open_now


class MountCollector:
    """Exports the UFS backends a :class:`MountResolver` holds when the registry is scraped.

    ``cachecluster_worker_mount_backend_open{mount_id, dataset}`` is 1 for each
    mount whose backend is open (opened ahead or by a read); retired backends
    (replaced, or of a deleted dataset) wait for their grace, then count in
    ``..._ufs_backends_closed_total``. No option value is exported.
    """

    def __init__(self, resolver: MountResolver) -> None:
        self.resolver = resolver

    def collect(self) -> Iterator[Metric]:
        """The open mounts, the retired backends, the closed and opened-ahead counts."""
        open_now = GaugeMetricFamily(
            f"{PREFIX}_mount_backend_open",
            "Mounts whose UFS backend is open (1 each).",
            labels=["mount_id", "dataset"],
        )
        for resolved in self.resolver.mounts():
            spec = resolved.spec
            open_now.add_metric([spec.mount_id, f"{spec.namespace}/{spec.dataset}"], 1.0)
        yield open_now
        retired = GaugeMetricFamily(
            f"{PREFIX}_ufs_backends_retired",
            "UFS backends replaced or of deleted datasets, still open for reads in flight.",
        )
        retired.add_metric([], float(self.resolver.retired))
        yield retired
        closed = CounterMetricFamily(
            f"{PREFIX}_ufs_backends_closed", "UFS backends closed (retired or at shutdown)."
        )
        closed.add_metric([], float(self.resolver.backends_closed))
        yield closed
        prepared = CounterMetricFamily(
            f"{PREFIX}_mount_backends_prepared",
            "UFS backends opened ahead of a first read (from the master's mount list).",
        )
        prepared.add_metric([], float(self.resolver.prepared))
        yield prepared
