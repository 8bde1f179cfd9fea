"""Operator rules: a TOML file of matches on process events, validated whole.

A rules file holds an array of tables named ``rules``::

    [[rules]]
    name = "miner"
    kind = "crypto_miner"
    severity = "high"
    description = "A known miner started"
    match = { binary = ["*/xmrig", "*/minerd"], in_container = true }

Every condition of ``match`` must hold. Text fields take a glob or a list of
globs (any may match; ``*`` also crosses ``/``); ``argv`` is matched against
the arguments joined by single spaces. A file is accepted whole or refused
with a message naming the rule and the field.
"""

import fnmatch
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver.detect.errors import RulesError
from receiver.detect.facts import ProcessFacts
from receiver.detect.findings import BuiltinKind, Finding, Severity
from receiver.ingest.records import Layer

MAX_RULES = 1000
MAX_PATTERNS = 100
MAX_PATTERN_CHARS = 4096
MAX_DESCRIPTION_CHARS = 2000
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

GLOB_FIELDS = (
    "binary",
    "argv",
    "parent_binary",
    "container",
    "pod_namespace",
    "pod_name",
    "image",
)
STREAM_KINDS = frozenset(
    {"socket", "pipe", "tty", "char", "file", "directory", "block", "none", "other"}
)
CHOICE_FIELDS: dict[str, frozenset[str]] = {
    "event": frozenset({"execute", "enumproc"}),
    "layer": frozenset(str(layer) for layer in Layer),
    "stdin": STREAM_KINDS,
    "stdout": STREAM_KINDS,
    "stderr": STREAM_KINDS,
}
FLAG_FIELDS = ("in_container", "in_exec_session")
CONTAINER_FIELDS = frozenset({"container", "pod_namespace", "pod_name", "image"})
RULE_KEYS = frozenset({"name", "kind", "severity", "description", "match"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One operator rule: conditions on a process event, and what to report."""

    name: str
    kind: str
    severity: Severity
    description: str
    globs: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    choices: Mapping[str, frozenset[str]] = field(default_factory=dict)
    flags: Mapping[str, bool] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs_parent(self) -> bool:
        """True when matching needs the parent's binary."""
        return "parent_binary" in self.globs

    @property
    def needs_container(self) -> bool:
        """True when matching needs the container's metadata."""
        return not CONTAINER_FIELDS.isdisjoint(self.globs)

    def matches(self, facts: ProcessFacts) -> bool:
        """True when every condition holds for ``facts``."""
        events = self.choices.get("event", CHOICE_FIELDS["event"])
        if facts.event not in events:
            return False
        for name, wanted in self.flags.items():
            if _flag(facts, name) is not wanted:
                return False
        for name, allowed in self.choices.items():
            if name != "event" and _choice(facts, name) not in allowed:
                return False
        for name, patterns in self.globs.items():
            value = _text_field(facts, name)
            if value is None or not any(p.match(value) for p in patterns):
                return False
        return True

    def finding(self, facts: ProcessFacts) -> Finding:
        """The finding this rule reports about ``facts``."""
        return Finding(
            vm_id=facts.vm_id,
            vm=facts.vm,
            boot=facts.boot,
            uuid=facts.uuid,
            kind=self.kind,
            severity=self.severity,
            at=facts.at,
            container_id=facts.container_id,
            exec_session_id=facts.exec_session_id,
            details={
                "rule": self.name,
                "description": self.description,
                "binary": facts.binary,
                "argv": facts.argv,
                "parent_binary": facts.parent_binary,
                "layer": facts.layer,
            },
        )

    def as_json(self) -> dict[str, Any]:
        """The rule as the API lists it."""
        return {
            "name": self.name,
            "kind": self.kind,
            "severity": str(self.severity),
            "description": self.description,
            "match": dict(self.source),
        }


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules in force, and where they came from."""

    rules: tuple[Rule, ...] = ()
    path: str | None = None
    loaded_at: float = 0.0

    @property
    def needs_parent(self) -> bool:
        """True when some rule matches on the parent's binary."""
        return any(rule.needs_parent for rule in self.rules)

    @property
    def needs_container(self) -> bool:
        """True when some rule matches on container metadata."""
        return any(rule.needs_container for rule in self.rules)


def _flag(facts: ProcessFacts, name: str) -> bool:
    if name == "in_container":
        return facts.container_id != 0
    return facts.exec_session_id != 0


def _choice(facts: ProcessFacts, name: str) -> str | None:
    if name == "layer":
        return facts.layer
    stream = facts.streams.get(name)
    return stream.get("kind") if stream else None


def _text_field(facts: ProcessFacts, name: str) -> str | None:
    if name == "binary":
        return facts.binary
    if name == "argv":
        return " ".join(facts.argv) if facts.argv is not None else None
    if name == "parent_binary":
        return facts.parent_binary
    container = facts.container
    if container is None:
        return None
    if name == "container":
        return container.container_name
    value: str | None = getattr(container, name)
    return value


class _RuleContext:
    """Builds error messages that name the file, the rule and the field."""

    def __init__(self, source: str, index: int, name: object) -> None:
        self.label = f"{source}: rule {index}"
        if isinstance(name, str) and name:
            self.label += f" ({name!r})"

    def error(self, field_name: str, problem: str) -> RulesError:
        return RulesError(f"{self.label}: field {field_name!r}: {problem}")


def _required_text(ctx: _RuleContext, raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None:
        raise ctx.error(key, "missing")
    if not isinstance(value, str) or not value:
        raise ctx.error(key, "must be a non-empty string")
    return value


def _globs(ctx: _RuleContext, name: str, value: Any) -> tuple[re.Pattern[str], ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or len(items) > MAX_PATTERNS:
        raise ctx.error(
            f"match.{name}", f"expected a glob or a list of 1 to {MAX_PATTERNS} globs"
        )
    patterns = []
    for item in items:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_PATTERN_CHARS:
            raise ctx.error(
                f"match.{name}", f"each glob is a string of 1 to {MAX_PATTERN_CHARS}"
            )
        patterns.append(re.compile(fnmatch.translate(item), re.DOTALL))
    return tuple(patterns)


def _choices(ctx: _RuleContext, name: str, value: Any) -> frozenset[str]:
    allowed = CHOICE_FIELDS[name]
    items = [value] if isinstance(value, str) else value
    expected = "one of " + ", ".join(sorted(allowed))
    if not isinstance(items, list) or not items:
        raise ctx.error(f"match.{name}", f"expected {expected}, or a list of them")
    for item in items:
        if item not in allowed:
            raise ctx.error(f"match.{name}", f"expected {expected}, got {item!r}")
    return frozenset(items)


def _parse_match(ctx: _RuleContext, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        raise ctx.error("match", "expected a table with at least one condition")
    globs: dict[str, tuple[re.Pattern[str], ...]] = {}
    choices: dict[str, frozenset[str]] = {}
    flags: dict[str, bool] = {}
    for name, value in raw.items():
        if name in GLOB_FIELDS:
            globs[name] = _globs(ctx, name, value)
        elif name in CHOICE_FIELDS:
            choices[name] = _choices(ctx, name, value)
        elif name in FLAG_FIELDS:
            if not isinstance(value, bool):
                raise ctx.error(f"match.{name}", "expected true or false")
            flags[name] = value
        else:
            known = ", ".join((*GLOB_FIELDS, *CHOICE_FIELDS, *FLAG_FIELDS))
            raise ctx.error(f"match.{name}", f"unknown condition (known: {known})")
    return {"globs": globs, "choices": choices, "flags": flags, "source": raw}


def parse_rule(source: str, index: int, raw: Any) -> Rule:
    """Validate one rule table; raise RulesError naming the field."""
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: rule {index}: expected a table")
    ctx = _RuleContext(source, index, raw.get("name"))
    for key in raw:
        if key not in RULE_KEYS:
            raise ctx.error(key, f"unknown (known: {', '.join(sorted(RULE_KEYS))})")
    name = _required_text(ctx, raw, "name")
    if not RULE_NAME.match(name):
        raise ctx.error("name", "use 1-128 letters, digits, '.', '_' or '-'")
    kind = _required_text(ctx, raw, "kind")
    if not KIND_NAME.match(kind):
        raise ctx.error("kind", "use 1-64 lower-case letters, digits or '_'")
    if kind in set(BuiltinKind):
        raise ctx.error("kind", f"{kind!r} is a built-in detection")
    severity = _required_text(ctx, raw, "severity")
    if severity not in set(Severity):
        levels = ", ".join(str(s) for s in Severity)
        raise ctx.error("severity", f"expected one of {levels}, got {severity!r}")
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise ctx.error(
            "description", f"expected a string of at most {MAX_DESCRIPTION_CHARS}"
        )
    if "match" not in raw:
        raise ctx.error("match", "missing")
    return Rule(
        name=name,
        kind=kind,
        severity=Severity(severity),
        description=description,
        **_parse_match(ctx, raw["match"]),
    )


def parse_rules(data: Mapping[str, Any], source: str) -> tuple[Rule, ...]:
    """Validate a parsed rules document."""
    unknown = sorted(set(data) - {"rules"})
    if unknown:
        raise RulesError(f"{source}: unknown top-level keys {', '.join(unknown)}")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise RulesError(f"{source}: 'rules' must be an array of tables ([[rules]])")
    if len(raw_rules) > MAX_RULES:
        raise RulesError(f"{source}: {len(raw_rules)} rules, at most {MAX_RULES}")
    rules = tuple(
        parse_rule(source, index, raw) for index, raw in enumerate(raw_rules, 1)
    )
    seen: set[str] = set()
    for index, rule in enumerate(rules, 1):
        if rule.name in seen:
            raise RulesError(
                f"{source}: rule {index} ({rule.name!r}): field 'name': duplicate"
            )
        seen.add(rule.name)
    return rules


def load_rules(path: str) -> RuleSet:
    """Read and validate the rules file at ``path``."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise RulesError(f"rules file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"rules file {path}: not valid TOML: {exc}") from exc
    rules = parse_rules(data, f"rules file {path}")
    return RuleSet(rules, path, time.time())
