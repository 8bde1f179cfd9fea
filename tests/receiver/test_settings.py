"""Settings: flags, environment and TOML map 1:1 to one typed object."""

from pathlib import Path

import pytest

from receiver.errors import ConfigError
from receiver.settings import parse_settings, parse_vm_spec


def test_defaults_match_the_interface() -> None:
    settings = parse_settings([])
    assert settings.db_url == "sqlite+aiosqlite:///var/csm.db"
    assert settings.api == "127.0.0.1:8080"
    assert settings.port == 4444
    assert not settings.no_vsock


def test_flag_beats_environment_beats_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "csm.toml"
    config.write_text('port = 5000\nhost = "from-file"\napi = "0.0.0.0:9000"\n')
    monkeypatch.setenv("CSM_PORT", "6000")
    monkeypatch.setenv("CSM_HOST", "from-env")
    settings = parse_settings(["--config", str(config), "--port", "7000"])
    assert settings.port == 7000
    assert settings.host == "from-env"
    assert settings.api == "0.0.0.0:9000"


def test_vm_specs() -> None:
    hybrid = parse_vm_spec("web=hybrid:/run/fc/web.vsock")
    assert (hybrid.transport, hybrid.uds_path) == ("hybrid", "/run/fc/web.vsock")
    assert parse_vm_spec("db=cid:7").cid == 7
    for bad in ["web", "web=hybrid:", "x=cid:two", "x=cid:2", "../etc=hybrid:/a"]:
        with pytest.raises(ConfigError):
            parse_vm_spec(bad)


def test_unknown_file_keys_and_duplicate_vms_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "csm.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown keys prot"):
        parse_settings(["--config", str(config)])
    with pytest.raises(ConfigError, match="duplicate"):
        parse_settings(["--vm", "a=cid:5", "--vm", "a=cid:6"])


def test_kafka_settings_default_off_and_take_broker_lists() -> None:
    defaults = parse_settings([])
    assert (defaults.kafka_bootstrap, defaults.kafka_topic_prefix) == ("", "csm")
    settings = parse_settings(
        [
            "--kafka-bootstrap",
            "kafka-1.example:9092,10.0.0.2:9093,[::1]:19092",
            "--kafka-topic-prefix",
            "prod.csm_v2-a",
        ]
    )
    assert settings.kafka_bootstrap == "kafka-1.example:9092,10.0.0.2:9093,[::1]:19092"
    assert settings.kafka_topic_prefix == "prod.csm_v2-a"


@pytest.mark.parametrize(
    "bootstrap",
    ["kafka", "kafka:", ":9092", "kafka:0", "kafka:65536", "a:1,,b:2", "a:1, b:2"],
)
def test_a_bad_kafka_bootstrap_is_refused(bootstrap: str) -> None:
    with pytest.raises(ConfigError, match=r"--kafka-bootstrap .*HOST:PORT"):
        parse_settings(["--kafka-bootstrap", bootstrap])


@pytest.mark.parametrize("prefix", ["", "csm/events", "csm events", "çsm", "x" * 241])
def test_a_bad_kafka_topic_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="--kafka-topic-prefix"):
        parse_settings(["--kafka-topic-prefix", prefix])
