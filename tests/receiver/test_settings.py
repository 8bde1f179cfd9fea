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
