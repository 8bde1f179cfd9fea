"""The detector: evaluates every stored batch and reports new findings.

It is an ingest listener, so detection runs as events arrive. A finding is
reported once per process and kind: the in-memory LRU skips repeats cheaply
and the store's unique key settles the rest (a replay, a restart). Reported
findings are also written to the ingest journal, where the exporter reads
them; after a crash the receiver evaluates the events again whose findings
may not have reached the journal (:meth:`Detector.reevaluate`).
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.detect import builtin
from receiver.detect.errors import RulesError
from receiver.detect.facts import ProcessFacts, mapping_facts, process_facts
from receiver.detect.findings import BuiltinKind, Finding
from receiver.detect.memory import DEFAULT_MEMORY_ENTRIES, DetectorMemory
from receiver.detect.outputs import WebhookSink, log_finding
from receiver.detect.rules import RuleSet, load_rules
from receiver.ingest.pipeline import QueuedEvent
from receiver.live import LiveHub
from receiver.store.findings import fetch_finding_ids, insert_findings

log = logging.getLogger(__name__)

SessionKey = tuple[int, int, int]
FindingJournal = Callable[[Finding], None]


class Detector:
    """Built-in detections and operator rules over the ingest stream."""

    def __init__(
        self,
        memory: DetectorMemory,
        hub: LiveHub,
        *,
        rules_path: str | None = None,
        webhook: WebhookSink | None = None,
    ) -> None:
        self.memory = memory
        self.hub = hub
        self.rules_path = rules_path
        self.rules = RuleSet()
        self.webhook = webhook
        self.found: Counter[tuple[str, str]] = Counter()
        self.unstored = 0
        self.journal: FindingJournal | None = None
        self.reloads: Counter[str] = Counter()

    @classmethod
    def for_engine(
        cls,
        engine: AsyncEngine,
        hub: LiveHub,
        *,
        rules_path: str | None = None,
        webhook: WebhookSink | None = None,
        memory_entries: int = DEFAULT_MEMORY_ENTRIES,
    ) -> "Detector":
        """A detector with a fresh memory over ``engine``."""
        memory = DetectorMemory(engine, memory_entries)
        return cls(memory, hub, rules_path=rules_path, webhook=webhook)

    def load_rules(self) -> RuleSet:
        """Load the rules file (if any); raise RulesError if it is invalid."""
        if self.rules_path is not None:
            self.rules = load_rules(self.rules_path)
            log.info("%d rules loaded from %s", len(self.rules.rules), self.rules_path)
        return self.rules

    def reload_rules(self) -> RuleSet:
        """Replace the rules from the file; on error keep the old ones."""
        if self.rules_path is None:
            raise RulesError("no rules file is configured (--rules FILE)")
        try:
            rules = load_rules(self.rules_path)
        except RulesError as exc:
            self.reloads["refused"] += 1
            log.error(
                "rules reload refused, keeping %d rules: %s", len(self.rules.rules), exc
            )
            raise
        self.rules = rules
        self.reloads["ok"] += 1
        log.info("%d rules reloaded from %s", len(rules.rules), self.rules_path)
        return rules

    def reload_on_signal(self) -> None:
        """SIGHUP: reload the rules; errors are logged, never raised."""
        with contextlib.suppress(RulesError):
            self.reload_rules()

    async def on_batch(self, items: Sequence[QueuedEvent]) -> None:
        """Evaluate a stored batch and report what it reveals."""
        new = await self._evaluate(items)
        if not new:
            return
        stored = await self._store(new)
        for finding in stored:
            self._report(finding)
        self._journal(stored)

    async def reevaluate(self, items: Sequence[QueuedEvent]) -> int:
        """Evaluate events stored by an earlier run that may have ended
        before their findings reached the journal; return how many findings
        are journaled again. Only findings not stored before are reported."""
        found = await self._evaluate(items)
        if not found:
            return 0
        stored = {finding.key for finding in await self._store(found)}
        for finding in found:
            if finding.key in stored:
                self._report(finding)
        known = [finding.key for finding in found if finding.id is None]
        ids = await fetch_finding_ids(self.memory.engine, known)
        for finding in found:
            finding.id = finding.id or ids.get(finding.key)
        self._journal(found)
        return len(found)

    def _journal(self, found: Sequence[Finding]) -> None:
        if self.journal is None:
            return
        for finding in found:
            self.journal(finding)

    async def _evaluate(self, items: Sequence[QueuedEvent]) -> list[Finding]:
        """The findings ``items`` reveal that this detector has not seen."""
        for item in items:
            self.memory.observe(item)
        candidates: list[Finding] = []
        sessions: dict[SessionKey, ProcessFacts] = {}
        for item in items:
            facts = process_facts(item)
            if facts is not None:
                candidates.extend(await self._check_process(facts))
                _note_session(sessions, facts)
                continue
            mapping = mapping_facts(item)
            if mapping is not None:
                finding = builtin.added_library_loaded(mapping)
                if finding is not None:
                    candidates.append(finding)
        reported = await self.memory.sessions_reported(list(sessions))
        for key, facts in sessions.items():
            if key not in reported:
                candidates.append(builtin.exec_session_started(facts))
        new = self._deduplicate(candidates)
        for finding in new:
            await self._describe_container(finding)
            if finding.kind == BuiltinKind.EXEC_SESSION_STARTED:
                self.memory.mark_session(
                    (finding.vm_id, finding.boot, finding.exec_session_id or 0)
                )
        return new

    async def _check_process(self, facts: ProcessFacts) -> list[Finding]:
        rules = self.rules
        if rules.needs_parent or builtin.reverse_shell_candidate(facts):
            facts.parent_binary = await self.memory.binary(
                facts.vm_id, facts.boot, facts.parent_uuid
            )
        if rules.needs_container:
            facts.container = await self.memory.container(
                facts.vm_id, facts.boot, facts.container_id
            )
        found = [
            finding
            for finding in (
                builtin.added_binary_executed(facts),
                builtin.reverse_shell(facts),
            )
            if finding is not None
        ]
        found.extend(rule.finding(facts) for rule in rules.rules if rule.matches(facts))
        return found

    def _deduplicate(self, candidates: list[Finding]) -> list[Finding]:
        reported = self.memory.reported
        new: list[Finding] = []
        for finding in sorted(candidates, key=lambda f: f.at):
            if finding.key in reported:
                continue
            reported.put(finding.key, True)
            new.append(finding)
        return new

    async def _describe_container(self, finding: Finding) -> None:
        if not finding.container_id:
            return
        info = await self.memory.container(
            finding.vm_id, finding.boot, finding.container_id
        )
        if info is not None:
            finding.details["container"] = info.as_json()

    async def _store(self, new: list[Finding]) -> list[Finding]:
        """Store ``new``; return those the store did not already hold."""
        rows = [
            {
                "vm_id": f.vm_id,
                "boot": f.boot,
                "uuid": f.uuid,
                "kind": f.kind,
                "severity": str(f.severity),
                "at": f.at,
                "container_id": f.container_id,
                "exec_session_id": f.exec_session_id,
                "details": f.details,
            }
            for f in new
        ]
        try:
            ids = await insert_findings(self.memory.engine, rows)
        except asyncio.CancelledError:
            raise
        except (DBAPIError, OSError) as exc:
            # Better reported without an id than not at all.
            self.unstored += len(new)
            log.error("%d findings could not be stored: %s", len(new), exc)
            return new
        for finding in new:
            finding.id = ids.get(finding.key)
        return [finding for finding in new if finding.id is not None]

    def _report(self, finding: Finding) -> None:
        self.found[(finding.kind, str(finding.severity))] += 1
        data = finding.as_json()
        log_finding(data)
        self.hub.publish("finding", finding.vm, data)
        if self.webhook is not None:
            self.webhook.offer(data)


def _note_session(
    sessions: dict[SessionKey, ProcessFacts], facts: ProcessFacts
) -> None:
    """Keep the earliest process of each exec session seen in a batch."""
    if not facts.exec_session_id:
        return
    key = (facts.vm_id, facts.boot, facts.exec_session_id)
    earliest = sessions.get(key)
    if earliest is None or facts.started_at < earliest.started_at:
        sessions[key] = facts
