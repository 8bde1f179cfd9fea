from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("protocol_version", "software_version", "kernel_version", "machine_id", "capabilities", "replay_capacity_events", "acked_seq", "next_seq")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    REPLAY_CAPACITY_EVENTS_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    software_version: str
    kernel_version: int
    machine_id: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    replay_capacity_events: int
    acked_seq: int
    next_seq: int
    def __init__(self, protocol_version: _Optional[int] = ..., software_version: _Optional[str] = ..., kernel_version: _Optional[int] = ..., machine_id: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., replay_capacity_events: _Optional[int] = ..., acked_seq: _Optional[int] = ..., next_seq: _Optional[int] = ...) -> None: ...

class SequencedEvent(_message.Message):
    __slots__ = ("seq", "event")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event: bytes
    def __init__(self, seq: _Optional[int] = ..., event: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("machine_id", "seq")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    machine_id: int
    seq: int
    def __init__(self, machine_id: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class LossReport(_message.Message):
    __slots__ = ("first_seq", "last_seq", "count", "cause", "first_timestamp", "last_timestamp")
    class Cause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CAUSE_UNSPECIFIED: _ClassVar[LossReport.Cause]
        REPLAY_BUFFER_FULL: _ClassVar[LossReport.Cause]
        SOURCE_OVERFLOW: _ClassVar[LossReport.Cause]
        ENCODING_FAILED: _ClassVar[LossReport.Cause]
    CAUSE_UNSPECIFIED: LossReport.Cause
    REPLAY_BUFFER_FULL: LossReport.Cause
    SOURCE_OVERFLOW: LossReport.Cause
    ENCODING_FAILED: LossReport.Cause
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LAST_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    last_seq: int
    count: int
    cause: LossReport.Cause
    first_timestamp: int
    last_timestamp: int
    def __init__(self, first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., count: _Optional[int] = ..., cause: _Optional[_Union[LossReport.Cause, str]] = ..., first_timestamp: _Optional[int] = ..., last_timestamp: _Optional[int] = ...) -> None: ...

class GuestCounters(_message.Message):
    __slots__ = ("events_produced", "events_sent", "events_acked", "events_replayed", "replay_buffer_events", "replay_buffer_bytes", "replay_buffer_capacity", "queue_depth", "drops", "reconnects", "timestamp")
    class DropsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EVENTS_PRODUCED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SENT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_ACKED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    REPLAY_BUFFER_EVENTS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_BUFFER_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLAY_BUFFER_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    events_produced: int
    events_sent: int
    events_acked: int
    events_replayed: int
    replay_buffer_events: int
    replay_buffer_bytes: int
    replay_buffer_capacity: int
    queue_depth: int
    drops: _containers.ScalarMap[str, int]
    reconnects: int
    timestamp: int
    def __init__(self, events_produced: _Optional[int] = ..., events_sent: _Optional[int] = ..., events_acked: _Optional[int] = ..., events_replayed: _Optional[int] = ..., replay_buffer_events: _Optional[int] = ..., replay_buffer_bytes: _Optional[int] = ..., replay_buffer_capacity: _Optional[int] = ..., queue_depth: _Optional[int] = ..., drops: _Optional[_Mapping[str, int]] = ..., reconnects: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...

class ConfigRequestV2(_message.Message):
    __slots__ = ("generation", "request")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    generation: int
    request: bytes
    def __init__(self, generation: _Optional[int] = ..., request: _Optional[bytes] = ...) -> None: ...

class ConfigResponseV2(_message.Message):
    __slots__ = ("generation", "response")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    generation: int
    response: bytes
    def __init__(self, generation: _Optional[int] = ..., response: _Optional[bytes] = ...) -> None: ...
