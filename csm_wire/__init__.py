"""The CSM wire format shared by the receiver and the guest collector.

Importing this package refuses to run on protobuf's pure-Python backend: it is
tens of times slower than upb and would turn a busy guest into a denial of
service on the host.
"""

from google.protobuf.internal import api_implementation

from csm_wire.errors import WireError

REQUIRED_PROTOBUF_BACKEND = "upb"

if api_implementation.Type() != REQUIRED_PROTOBUF_BACKEND:
    raise WireError(
        f"protobuf backend is {api_implementation.Type()!r}, "
        f"{REQUIRED_PROTOBUF_BACKEND!r} is required; "
        "unset PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"
    )

__all__ = ["WireError"]
