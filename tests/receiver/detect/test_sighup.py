"""``csm-receiver serve`` reloads its rules file on SIGHUP and keeps running."""

import json
import signal
import time
import urllib.request
from pathlib import Path

from tests.receiver.helpers import ReceiverProcess

TOKEN = "sighup-test-token"
RULE = """
[[rules]]
name = "{name}"
kind = "watched_binary"
severity = "low"
match = {{ binary = "/opt/{name}" }}
"""
RELOAD_TIMEOUT_S = 30


def _get(port: int, path: str) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
    return body


def _rule_names(port: int) -> list[str]:
    return [rule["name"] for rule in json.loads(_get(port, "/api/v1/rules"))["items"]]


def _refused_reloads(port: int) -> float:
    for line in _get(port, "/metrics").decode().splitlines():
        if line.startswith('csm_rules_reloads_total{result="refused"}'):
            return float(line.split()[-1])
    return 0.0


def test_sighup_reloads_the_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE.format(name="first"))
    receiver = ReceiverProcess(
        tmp_path, "--no-vsock", "--rules", str(rules), "--api-token", TOKEN
    )
    port = receiver.port
    try:
        assert _rule_names(port) == ["first"]
        rules.write_text(RULE.format(name="second"))
        receiver.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while _rule_names(port) != ["second"]:
            assert time.monotonic() < deadline, "SIGHUP did not reload the rules"
            time.sleep(0.05)

        # A bad file on SIGHUP is logged and refused; the service stays up.
        rules.write_text(RULE.format(name="third").replace('"low"', '"loud"'))
        receiver.process.send_signal(signal.SIGHUP)
        while _refused_reloads(port) < 1:
            assert time.monotonic() < deadline, "SIGHUP did not try the bad file"
            time.sleep(0.05)
        assert _rule_names(port) == ["second"]
    finally:
        code = receiver.stop(signal.SIGTERM)
    err = receiver.stderr
    assert code == 0, err
    assert "rules reload refused" in err and "field 'severity'" in err
    assert "Traceback" not in err
