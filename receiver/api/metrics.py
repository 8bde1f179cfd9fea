"""Prometheus metrics, collected from live state at scrape time."""

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from receiver.api.context import service_of
from receiver.detect.metrics import detection_metrics
from receiver.sessions.vm import VmHealth

if TYPE_CHECKING:
    from receiver.ingest.pipeline import Ingestor, QueuedEvent
    from receiver.service import Service

routes = web.RouteTableDef()
CONTENT_TYPE = "text/plain; version=0.0.4"


class IngestStats:
    """Batch latency and ingest lag, observed after each stored batch."""

    def __init__(self, ingestor: "Ingestor") -> None:
        self.ingestor = ingestor
        self.batches = 0
        self.batch_seconds_total = 0.0
        self.last_lag_s = 0.0
        self.lag_seconds_total = 0.0
        self.events = 0

    async def observe(self, items: Sequence["QueuedEvent"]) -> None:
        """Account for one stored batch (an ingest listener)."""
        now = time.time_ns()
        self.batches += 1
        self.batch_seconds_total += self.ingestor.last_batch_s
        lags = [(now - item.received_at) / 1e9 for item in items]
        if lags:
            self.last_lag_s = max(lags)
            self.lag_seconds_total += sum(lags)
            self.events += len(lags)


class ServiceCollector(Collector):
    """Reads counters from the service each scrape: nothing to keep in sync."""

    def __init__(self, service: "Service") -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        """Yield the current metrics."""
        connected = GaugeMetricFamily(
            "csm_vm_connected", "1 when the VM has a live connection", labels=["vm"]
        )
        healthy = GaugeMetricFamily(
            "csm_vm_healthy", "1 when the VM's heartbeats are on time", labels=["vm"]
        )
        state = GaugeMetricFamily(
            "csm_vm_state",
            "1 for the VM's connection state, 0 for the others",
            labels=["vm", "state"],
        )
        counters = {
            name: CounterMetricFamily(f"csm_vm_{name}", help_text, labels=["vm"])
            for name, help_text in (
                ("frames", "frames received"),
                ("bytes", "bytes received"),
                ("events", "events received"),
                ("decode_errors", "frames that did not decode"),
                ("unknown_frame_types", "frames of unknown type"),
                ("framing_errors", "connections closed for broken framing"),
                ("connections", "connections accepted"),
            )
        }
        drops = CounterMetricFamily(
            "csm_vm_drops", "events not stored, by cause", labels=["vm", "cause"]
        )
        for vm in self.service.registry:
            connected.add_metric([vm.name], 1.0 if vm.sessions else 0.0)
            healthy.add_metric([vm.name], 1.0 if vm.health is VmHealth.HEALTHY else 0.0)
            for health in VmHealth:
                state.add_metric(
                    [vm.name, health.value], 1.0 if vm.health is health else 0.0
                )
            values = vm.counters.as_dict()
            for name, family in counters.items():
                family.add_metric([vm.name], float(values[name]))
            for cause, count in values["drops"].items():
                drops.add_metric([vm.name, cause], float(count))
        yield connected
        yield healthy
        yield state
        yield from counters.values()
        yield drops
        ingestor = self.service.ingestor
        yield GaugeMetricFamily(
            "csm_ingest_queue_depth",
            "events waiting for the store",
            value=float(len(self.service.queue)),
        )
        yield GaugeMetricFamily(
            "csm_db_batch_seconds",
            "duration of the last database batch",
            value=ingestor.last_batch_s,
        )
        yield CounterMetricFamily(
            "csm_events_stored",
            "events written to the store",
            value=float(ingestor.events_written),
        )
        yield from detection_metrics(self.service.detector)
        yield from self._ingest_metrics()
        yield GaugeMetricFamily(
            "csm_stream_subscribers",
            "live stream clients attached",
            value=float(self.service.hub.subscribers),
        )
        yield from delivery_metrics(self.service)
        yield from export_metrics(self.service)

    def _ingest_metrics(self) -> Iterator[Metric]:
        stats = self.service.ingest_stats
        yield GaugeMetricFamily(
            "csm_ingest_queue_capacity",
            "events the ingest queue holds before it drops",
            value=float(self.service.queue.capacity),
        )
        batches = SummaryMetricFamily(
            "csm_db_batch_duration_seconds", "time to write one database batch"
        )
        batches.add_metric([], stats.batches, stats.batch_seconds_total)
        yield batches
        lag = SummaryMetricFamily(
            "csm_ingest_lag_seconds", "from receipt of an event to its storage"
        )
        lag.add_metric([], stats.events, stats.lag_seconds_total)
        yield lag
        yield GaugeMetricFamily(
            "csm_ingest_last_lag_seconds",
            "the longest receipt-to-storage delay in the last batch",
            value=stats.last_lag_s,
        )


def delivery_metrics(service: "Service") -> Iterator[Metric]:
    """Gaps, duplicates, backpressure and the journal."""
    labels = ["vm", "cause"]
    gaps = CounterMetricFamily("csm_vm_gaps", "gaps accounted for", labels=labels)
    lost = CounterMetricFamily(
        "csm_vm_gap_events", "events known lost in gaps", labels=labels
    )
    duplicates = CounterMetricFamily(
        "csm_vm_duplicates", "v2 events dropped as duplicates", labels=["vm"]
    )
    paused = GaugeMetricFamily(
        "csm_vm_reading_paused", "1 while backpressure pauses the VM", labels=["vm"]
    )
    queued = GaugeMetricFamily(
        "csm_vm_queue_bytes", "bytes queued for the store", labels=["vm"]
    )
    for vm in service.registry:
        delivery = vm.delivery.as_dict()
        for cause, count in delivery["gaps"].items():
            gaps.add_metric([vm.name, cause], float(count))
        for cause, count in delivery["gap_events"].items():
            lost.add_metric([vm.name, cause], float(count))
        duplicates.add_metric([vm.name], float(vm.delivery.duplicates))
        paused.add_metric([vm.name], 1.0 if vm.delivery.paused else 0.0)
        queued.add_metric([vm.name], float(service.queue.vm_bytes(vm.vm_id)))
    yield from (gaps, lost, duplicates, paused, queued)
    journal = service.journal
    yield GaugeMetricFamily(
        "csm_journal_bytes", "bytes in the ingest journal", value=journal.size_bytes
    )
    yield GaugeMetricFamily(
        "csm_journal_max_bytes", "the journal's size bound", value=journal.max_bytes
    )
    yield CounterMetricFamily(
        "csm_journal_overflows",
        "records refused because the journal was full",
        value=float(journal.overflows),
    )
    yield GaugeMetricFamily(
        "csm_ingest_queue_bytes",
        "bytes queued for the store, all VMs",
        value=float(service.queue.total_bytes),
    )
    yield CounterMetricFamily(
        "csm_ingest_pauses",
        "times a VM was paused for backpressure",
        value=float(service.queue.pauses),
    )


def export_metrics(service: "Service") -> Iterator[Metric]:
    """Per sink: what was published, how far behind, and what was lost."""
    published = CounterMetricFamily(
        "csm_export_published", "messages published", labels=["sink", "stream"]
    )
    sink_labels = ["sink"]
    lag = GaugeMetricFamily(
        "csm_export_lag_records",
        "journal records not yet published",
        labels=sink_labels,
    )
    skipped = CounterMetricFamily(
        "csm_export_skipped_records",
        "records deleted unread because the journal was full",
        labels=sink_labels,
    )
    failures = CounterMetricFamily(
        "csm_export_failures", "failed connects and publishes", labels=sink_labels
    )
    oversized = CounterMetricFamily(
        "csm_export_oversized",
        "messages cut to fit the engine's largest message",
        labels=sink_labels,
    )
    unusable = CounterMetricFamily(
        "csm_export_unusable_records",
        "journaled events that could not be turned into a message",
        labels=sink_labels,
    )
    for exporter in service.fleet.exporters:
        name = exporter.sink.name
        for stream, count in exporter.published.items():
            published.add_metric([name, stream], float(count))
        reader = exporter.journal.readers.get(exporter.reader_name)
        lag.add_metric([name], float(reader.lag if reader is not None else 0))
        skipped.add_metric([name], float(reader.skipped if reader is not None else 0))
        failures.add_metric([name], float(exporter.failures))
        oversized.add_metric([name], float(exporter.sink.oversized))
        unusable.add_metric([name], float(exporter.unusable))
    yield from (published, lag, skipped, failures, oversized, unusable)
    yield CounterMetricFamily(
        "csm_export_findings_unjournaled",
        "findings not exported because the journal was full",
        value=float(service.findings_unjournaled),
    )


@routes.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service_of(request)))
    return web.Response(
        body=generate_latest(registry), content_type="text/plain", charset="utf-8"
    )
