"""Prometheus metrics, collected from live state at scrape time."""

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receiver.api.context import service_of
from receiver.detect.metrics import detection_metrics
from receiver.sessions.vm import VmHealth

if TYPE_CHECKING:
    from receiver.service import Service

routes = web.RouteTableDef()
CONTENT_TYPE = "text/plain; version=0.0.4"


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
            values = vm.counters.as_dict()
            for name, family in counters.items():
                family.add_metric([vm.name], float(values[name]))
            for cause, count in values["drops"].items():
                drops.add_metric([vm.name, cause], float(count))
        yield connected
        yield healthy
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


@routes.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service_of(request)))
    return web.Response(
        body=generate_latest(registry), content_type="text/plain", charset="utf-8"
    )
