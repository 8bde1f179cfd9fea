"""The generated protobuf code is exactly what the files in proto/ say."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from csm_wire.codec import FrameType
from csm_wire.gen import csm_v2_pb2, schema_pb2

ROOT = Path(__file__).resolve().parents[2]


def _compile(tmp_path: Path, name: str) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / f"{name}.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--descriptor_set_out={out}",
            name,
        ],
        check=True,
    )
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _without_json_names(proto: descriptor_pb2.FileDescriptorProto) -> None:
    # protoc adds derived json_name values; the embedded descriptor omits them.
    pending = list(proto.message_type)
    while pending:
        message = pending.pop()
        for field in message.field:
            field.ClearField("json_name")
        pending.extend(message.nested_type)


@pytest.mark.parametrize(
    ("name", "module_descriptor"),
    [("schema.proto", schema_pb2.DESCRIPTOR), ("csm_v2.proto", csm_v2_pb2.DESCRIPTOR)],
)
def test_generated_code_matches_the_proto_file(
    tmp_path: Path, name: str, module_descriptor: FileDescriptor
) -> None:
    compiled = _compile(tmp_path, name).file[0]
    generated = descriptor_pb2.FileDescriptorProto()
    module_descriptor.CopyToProto(generated)
    _without_json_names(compiled)
    assert generated == compiled


def test_field_numbers_of_the_csm_kernel() -> None:
    event = schema_pb2.Event.DESCRIPTOR.fields_by_name
    numbers = {name: field.number for name, field in event.items()}
    assert numbers == {
        "execute": 1,
        "container": 2,
        "exit": 3,
        "memexec": 4,
        "clone": 5,
        "timestamp": 6,
        "enumproc": 7,
    }
    process = schema_pb2.Process.DESCRIPTOR.fields_by_name
    assert process["exec_session_id"].number == 12
    assert process["container_id"].number == 7
    assert schema_pb2.File.DESCRIPTOR.fields_by_name["ino"].number == 3


def test_import_refuses_the_pure_python_backend() -> None:
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    result = subprocess.run(
        [sys.executable, "-c", "import csm_wire"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "upb" in result.stderr


def test_v2_package_stands_alone() -> None:
    assert csm_v2_pb2.DESCRIPTOR.package == "csm.v2"
    assert list(csm_v2_pb2.DESCRIPTOR.dependencies) == []
    sequenced = csm_v2_pb2.SequencedEvent.DESCRIPTOR.fields_by_name
    assert sequenced["event"].type == sequenced["event"].TYPE_BYTES


def test_v2_frame_types_sit_well_above_v1() -> None:
    v1 = {FrameType.HEARTBEAT, FrameType.EVENT}
    v1 |= {FrameType.CONFIG_REQUEST, FrameType.CONFIG_RESPONSE}
    assert sorted(t.value for t in FrameType if t not in v1) == list(range(64, 71))
