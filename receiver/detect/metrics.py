"""Prometheus metrics of detection: findings, rules and the webhook."""

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from receiver.detect.detector import Detector


def detection_metrics(detector: Detector) -> Iterator[Metric]:
    """Yield the detector's counters as metric families."""
    found = CounterMetricFamily(
        "csm_findings", "new findings reported", labels=["kind", "severity"]
    )
    for (kind, severity), count in sorted(detector.found.items()):
        found.add_metric([kind, severity], float(count))
    yield found
    yield CounterMetricFamily(
        "csm_findings_unstored",
        "findings reported but not stored (database unavailable)",
        value=float(detector.unstored),
    )
    yield GaugeMetricFamily(
        "csm_detection_rules",
        "operator rules in force",
        value=len(detector.rules.rules),
    )
    reloads = CounterMetricFamily(
        "csm_rules_reloads", "rules reloads by result", labels=["result"]
    )
    for result in ("ok", "refused"):
        reloads.add_metric([result], float(detector.reloads[result]))
    yield reloads
    webhook = detector.webhook
    if webhook is None:
        return
    for name, help_text, value in (
        ("delivered", "findings the webhook accepted", webhook.delivered),
        ("failures", "failed webhook attempts (retried)", webhook.failures),
        ("dropped", "findings dropped from a full webhook queue", webhook.dropped),
        ("refused", "findings the webhook refused (4xx)", webhook.refused),
    ):
        yield CounterMetricFamily(f"csm_webhook_{name}", help_text, value=float(value))
    yield GaugeMetricFamily(
        "csm_webhook_queue_depth",
        "findings waiting for the webhook",
        value=webhook.pending,
    )
