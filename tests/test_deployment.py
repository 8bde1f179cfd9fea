"""docker-compose.yml follows the Compose specification and starts the real
``csm-receiver serve`` (no Docker engine runs here, so the files are checked)."""

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The Compose specification's JSON schema ships inside this release.
SCHEMA_WHEEL = "docker-compose==1.29.2"


@pytest.fixture(scope="session")
def compose_schema(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("compose-schema")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            SCHEMA_WHEEL,
            "-d",
            str(directory),
        ],
        check=True,
    )
    wheel = next(directory.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return json.loads(archive.read("compose/config/compose_spec.json"))


def test_compose_file_is_valid(compose_schema: dict) -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    # The file names its draft with a URL jsonschema does not map; use it directly.
    jsonschema.Draft201909Validator(compose_schema).validate(document)
    receiver = document["services"]["receiver"]
    assert "/dev/vsock:/dev/vsock" in receiver["devices"]
    assert receiver["environment"]["CSM_DB"].startswith("postgresql+asyncpg://")
    assert receiver["build"] == "."
    assert "entrypoint" not in receiver


def test_image_entry_point_is_the_real_serve_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE)
    assert match
    assert json.loads(match[1]) == ["csm-receiver", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["csm-receiver"] == "receiver.cli:main"
    help_text = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--config" in help_text


def test_example_config_is_accepted() -> None:
    from receiver.settings import parse_settings

    settings = parse_settings(["--config", str(ROOT / "receiver.toml.example")])
    assert [vm.name for vm in settings.vms] == ["web", "db"]
