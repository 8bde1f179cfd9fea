"""The Kafka sink: each item goes to topic ``<prefix>.events``,
``<prefix>.gaps`` or ``<prefix>.findings``, keyed by ``<host>/<vm>`` so
that one VM's messages share a partition and keep their order, and is
acknowledged by all in-sync replicas (``acks="all"``) before
:meth:`KafkaSink.publish` returns.

Kafka keeps no broker-side duplicate window like JetStream's, so delivery is
at least once: a window republished after a crash or a failed publish arrives
again with the same ``csm-msg-id`` header, and consumers deduplicate by that
header. After a failure a replayed message
can arrive behind newer ones of the same VM; keeping the first copy of each
id restores the order.
"""

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from receiver.export.errors import SinkUnavailable
from receiver.export.source import STREAMS, ExportItem, encode_body

log = logging.getLogger(__name__)

# One Kafka request (and a batch's delivery, retries included) gives up after
# this long; the bounds below leave room for it to finish first.
REQUEST_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 10.0
# Topics the sink creates; existing topics are used as they are.
TOPIC_PARTITIONS = 6
MAX_REPLICATION_FACTOR = 3
# What one message may take: aiokafka's default max_request_size (1 MiB),
# less room for the key, headers and batch framing.
MAX_BODY_BYTES = (1 << 20) - 4096


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class KafkaSink:
    """Publishes export items to Kafka, one topic per stream."""

    def __init__(self, bootstrap: str, topic_prefix: str) -> None:
        self.name = f"kafka:{topic_prefix}"
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self._producer: AIOKafkaProducer | None = None
        # Bodies cut to fit Kafka's largest request.
        self.oversized = 0

    def topic(self, stream: str) -> str:
        """``<prefix>.<events|gaps|findings>``."""
        return f"{self.topic_prefix}.{stream}"

    async def connect(self) -> None:
        """Start a producer and create the topics if missing."""
        await self.close()
        # Idempotence (enable_idempotence=True) would let Kafka drop batches
        # the producer resent itself, but the Tansu 0.6.0 broker the tests run
        # on answers aiokafka's InitProducerId request (v0) with an unknown
        # server error, so it stays off. Order within a partition holds
        # anyway: aiokafka keeps one batch per partition in flight. A batch
        # resent by the producer is a duplicate consumers drop by csm-msg-id.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="csm-receiver",
            acks="all",
            request_timeout_ms=int(REQUEST_TIMEOUT_S * 1000),
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await producer.start()
                await self._create_missing_topics()
        except BaseException as exc:
            await self._stop(producer)
            if isinstance(exc, KafkaError | OSError | TimeoutError):
                message = f"Kafka at {self.bootstrap}: {_describe(exc)}"
                raise SinkUnavailable(message) from exc
            raise
        self._producer = producer
        log.info(
            "connected to Kafka at %s (topics %s.*)", self.bootstrap, self.topic_prefix
        )

    async def _create_missing_topics(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="csm-receiver-admin",
            request_timeout_ms=int(REQUEST_TIMEOUT_S * 1000),
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [self.topic(s) for s in STREAMS if self.topic(s) not in existing]
            if not missing:
                return
            brokers = (await admin.describe_cluster())["brokers"]
            replicas = max(1, min(MAX_REPLICATION_FACTOR, len(brokers)))
            new = [NewTopic(name, TOPIC_PARTITIONS, replicas) for name in missing]
            response = await admin.create_topics(new)
        finally:
            await admin.close()
        for entry in response.topic_errors:
            # (topic, error_code[, error_message]) depending on the version.
            topic, code = entry[0], entry[1]
            if code in (0, TopicAlreadyExistsError.errno):
                continue
            given = entry[2] if len(entry) > 2 else None
            reason = given or for_code(code).message
            raise SinkUnavailable(f"Kafka refused to create topic {topic}: {reason}")
        log.info(
            "created Kafka topics %s (%d partitions, replication %d)",
            ", ".join(missing),
            TOPIC_PARTITIONS,
            replicas,
        )

    async def publish(self, items: Sequence[ExportItem]) -> None:
        """Send ``items`` and wait until Kafka acknowledged every one.

        After a failure the producer is closed, so that nothing it still
        holds is delivered behind the replay; the next call reconnects.
        """
        if self._producer is None:
            await self.connect()
        producer = self._producer
        assert producer is not None
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                sent = [await self._send(producer, item) for item in items]
                await asyncio.gather(*sent)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.close()
            raise SinkUnavailable(
                f"Kafka publish to {self.bootstrap} failed: {_describe(exc)}"
            ) from exc

    async def _send(
        self, producer: AIOKafkaProducer, item: ExportItem
    ) -> asyncio.Future[object]:
        headers = [
            ("csm-msg-id", item.msg_id.encode()),
            ("csm-host", item.host.encode()),
            ("csm-vm", item.vm.encode()),
            ("csm-kind", item.kind.encode()),
        ]
        body, cut = encode_body(item, MAX_BODY_BYTES)
        if cut:
            self.oversized += 1
            log.warning("%s: %s cut to fit Kafka", self.name, item.msg_id)
        future: asyncio.Future[object] = await producer.send(
            self.topic(item.stream),
            value=body,
            key=f"{item.host}/{item.vm}".encode(),
            headers=headers,
        )
        return future

    async def close(self) -> None:
        """Flush what the producer holds (bounded) and close it."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop(producer)

    @staticmethod
    async def _stop(producer: AIOKafkaProducer) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await producer.stop()
        except Exception as exc:
            log.warning("closing the Kafka producer failed: %s", _describe(exc))
