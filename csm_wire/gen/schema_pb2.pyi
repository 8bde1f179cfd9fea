from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SocketIp(_message.Message):
    __slots__ = ("family", "ip", "port")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    family: int
    ip: bytes
    port: int
    def __init__(self, family: _Optional[int] = ..., ip: _Optional[bytes] = ..., port: _Optional[int] = ...) -> None: ...

class Socket(_message.Message):
    __slots__ = ("local", "remote")
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    local: SocketIp
    remote: SocketIp
    def __init__(self, local: _Optional[_Union[SocketIp, _Mapping]] = ..., remote: _Optional[_Union[SocketIp, _Mapping]] = ...) -> None: ...

class Overlay(_message.Message):
    __slots__ = ("lower_layer", "upper_layer", "modified_uuid")
    LOWER_LAYER_FIELD_NUMBER: _ClassVar[int]
    UPPER_LAYER_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_UUID_FIELD_NUMBER: _ClassVar[int]
    lower_layer: bool
    upper_layer: bool
    modified_uuid: bytes
    def __init__(self, lower_layer: _Optional[bool] = ..., upper_layer: _Optional[bool] = ..., modified_uuid: _Optional[bytes] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("fullpath", "ino", "overlayfs", "socket", "ctime")
    FULLPATH_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    OVERLAYFS_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    CTIME_FIELD_NUMBER: _ClassVar[int]
    fullpath: bytes
    ino: int
    overlayfs: Overlay
    socket: Socket
    ctime: int
    def __init__(self, fullpath: _Optional[bytes] = ..., ino: _Optional[int] = ..., overlayfs: _Optional[_Union[Overlay, _Mapping]] = ..., socket: _Optional[_Union[Socket, _Mapping]] = ..., ctime: _Optional[int] = ...) -> None: ...

class ProcessArguments(_message.Message):
    __slots__ = ("argv", "argv_truncated", "envp", "envp_truncated")
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ARGV_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ENVP_FIELD_NUMBER: _ClassVar[int]
    ENVP_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[bytes]
    argv_truncated: int
    envp: _containers.RepeatedScalarFieldContainer[bytes]
    envp_truncated: int
    def __init__(self, argv: _Optional[_Iterable[bytes]] = ..., argv_truncated: _Optional[int] = ..., envp: _Optional[_Iterable[bytes]] = ..., envp_truncated: _Optional[int] = ...) -> None: ...

class Descriptor(_message.Message):
    __slots__ = ("mode", "file")
    MODE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    mode: int
    file: File
    def __init__(self, mode: _Optional[int] = ..., file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...

class Streams(_message.Message):
    __slots__ = ("stdin", "stdout", "stderr")
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    stdin: Descriptor
    stdout: Descriptor
    stderr: Descriptor
    def __init__(self, stdin: _Optional[_Union[Descriptor, _Mapping]] = ..., stdout: _Optional[_Union[Descriptor, _Mapping]] = ..., stderr: _Optional[_Union[Descriptor, _Mapping]] = ...) -> None: ...

class Process(_message.Message):
    __slots__ = ("creation_timestamp", "uuid", "pid", "binary", "parent_pid", "parent_uuid", "container_id", "container_pid", "container_parent_pid", "args", "streams", "exec_session_id")
    CREATION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    PARENT_PID_FIELD_NUMBER: _ClassVar[int]
    PARENT_UUID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PARENT_PID_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    EXEC_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    creation_timestamp: int
    uuid: bytes
    pid: int
    binary: File
    parent_pid: int
    parent_uuid: bytes
    container_id: int
    container_pid: int
    container_parent_pid: int
    args: ProcessArguments
    streams: Streams
    exec_session_id: int
    def __init__(self, creation_timestamp: _Optional[int] = ..., uuid: _Optional[bytes] = ..., pid: _Optional[int] = ..., binary: _Optional[_Union[File, _Mapping]] = ..., parent_pid: _Optional[int] = ..., parent_uuid: _Optional[bytes] = ..., container_id: _Optional[int] = ..., container_pid: _Optional[int] = ..., container_parent_pid: _Optional[int] = ..., args: _Optional[_Union[ProcessArguments, _Mapping]] = ..., streams: _Optional[_Union[Streams, _Mapping]] = ..., exec_session_id: _Optional[int] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("creation_timestamp", "pod_namespace", "pod_name", "container_id", "container_name", "container_image_uri", "labels", "init_uuid", "container_image_id")
    CREATION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    POD_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INIT_UUID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    creation_timestamp: int
    pod_namespace: bytes
    pod_name: bytes
    container_id: int
    container_name: bytes
    container_image_uri: bytes
    labels: _containers.RepeatedScalarFieldContainer[bytes]
    init_uuid: bytes
    container_image_id: bytes
    def __init__(self, creation_timestamp: _Optional[int] = ..., pod_namespace: _Optional[bytes] = ..., pod_name: _Optional[bytes] = ..., container_id: _Optional[int] = ..., container_name: _Optional[bytes] = ..., container_image_uri: _Optional[bytes] = ..., labels: _Optional[_Iterable[bytes]] = ..., init_uuid: _Optional[bytes] = ..., container_image_id: _Optional[bytes] = ...) -> None: ...

class ExecuteEvent(_message.Message):
    __slots__ = ("proc",)
    PROC_FIELD_NUMBER: _ClassVar[int]
    proc: Process
    def __init__(self, proc: _Optional[_Union[Process, _Mapping]] = ...) -> None: ...

class CloneEvent(_message.Message):
    __slots__ = ("proc",)
    PROC_FIELD_NUMBER: _ClassVar[int]
    proc: Process
    def __init__(self, proc: _Optional[_Union[Process, _Mapping]] = ...) -> None: ...

class EnumerateProcessEvent(_message.Message):
    __slots__ = ("proc",)
    PROC_FIELD_NUMBER: _ClassVar[int]
    proc: Process
    def __init__(self, proc: _Optional[_Union[Process, _Mapping]] = ...) -> None: ...

class ContainerInfoEvent(_message.Message):
    __slots__ = ("container",)
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    container: Container
    def __init__(self, container: _Optional[_Union[Container, _Mapping]] = ...) -> None: ...

class ExitEvent(_message.Message):
    __slots__ = ("process_uuid", "exit_status")
    PROCESS_UUID_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    process_uuid: bytes
    exit_status: int
    def __init__(self, process_uuid: _Optional[bytes] = ..., exit_status: _Optional[int] = ...) -> None: ...

class MemoryExecEvent(_message.Message):
    __slots__ = ("proc", "prot_exec_timestamp", "new_flags", "req_flags", "old_vm_flags", "mmap_flags", "mapped_file", "action", "start_addr", "end_addr", "is_initial_mmap")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNDEFINED: _ClassVar[MemoryExecEvent.Action]
        MPROTECT: _ClassVar[MemoryExecEvent.Action]
        MMAP_FILE: _ClassVar[MemoryExecEvent.Action]
    UNDEFINED: MemoryExecEvent.Action
    MPROTECT: MemoryExecEvent.Action
    MMAP_FILE: MemoryExecEvent.Action
    PROC_FIELD_NUMBER: _ClassVar[int]
    PROT_EXEC_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NEW_FLAGS_FIELD_NUMBER: _ClassVar[int]
    REQ_FLAGS_FIELD_NUMBER: _ClassVar[int]
    OLD_VM_FLAGS_FIELD_NUMBER: _ClassVar[int]
    MMAP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_FILE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    START_ADDR_FIELD_NUMBER: _ClassVar[int]
    END_ADDR_FIELD_NUMBER: _ClassVar[int]
    IS_INITIAL_MMAP_FIELD_NUMBER: _ClassVar[int]
    proc: Process
    prot_exec_timestamp: int
    new_flags: int
    req_flags: int
    old_vm_flags: int
    mmap_flags: int
    mapped_file: File
    action: MemoryExecEvent.Action
    start_addr: int
    end_addr: int
    is_initial_mmap: bool
    def __init__(self, proc: _Optional[_Union[Process, _Mapping]] = ..., prot_exec_timestamp: _Optional[int] = ..., new_flags: _Optional[int] = ..., req_flags: _Optional[int] = ..., old_vm_flags: _Optional[int] = ..., mmap_flags: _Optional[int] = ..., mapped_file: _Optional[_Union[File, _Mapping]] = ..., action: _Optional[_Union[MemoryExecEvent.Action, str]] = ..., start_addr: _Optional[int] = ..., end_addr: _Optional[int] = ..., is_initial_mmap: _Optional[bool] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("execute", "container", "exit", "memexec", "clone", "enumproc", "timestamp")
    EXECUTE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    MEMEXEC_FIELD_NUMBER: _ClassVar[int]
    CLONE_FIELD_NUMBER: _ClassVar[int]
    ENUMPROC_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    execute: ExecuteEvent
    container: ContainerInfoEvent
    exit: ExitEvent
    memexec: MemoryExecEvent
    clone: CloneEvent
    enumproc: EnumerateProcessEvent
    timestamp: int
    def __init__(self, execute: _Optional[_Union[ExecuteEvent, _Mapping]] = ..., container: _Optional[_Union[ContainerInfoEvent, _Mapping]] = ..., exit: _Optional[_Union[ExitEvent, _Mapping]] = ..., memexec: _Optional[_Union[MemoryExecEvent, _Mapping]] = ..., clone: _Optional[_Union[CloneEvent, _Mapping]] = ..., enumproc: _Optional[_Union[EnumerateProcessEvent, _Mapping]] = ..., timestamp: _Optional[int] = ...) -> None: ...

class ContainerCollectorConfig(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class ExecuteCollectorConfig(_message.Message):
    __slots__ = ("enabled", "argv_limit", "envp_limit", "envp_allowlist")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ARGV_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ENVP_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ENVP_ALLOWLIST_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    argv_limit: int
    envp_limit: int
    envp_allowlist: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, enabled: _Optional[bool] = ..., argv_limit: _Optional[int] = ..., envp_limit: _Optional[int] = ..., envp_allowlist: _Optional[_Iterable[str]] = ...) -> None: ...

class MemExecCollectorConfig(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class ConfigurationRequest(_message.Message):
    __slots__ = ("container_config", "execute_config", "memexec_config")
    CONTAINER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    MEMEXEC_CONFIG_FIELD_NUMBER: _ClassVar[int]
    container_config: ContainerCollectorConfig
    execute_config: ExecuteCollectorConfig
    memexec_config: MemExecCollectorConfig
    def __init__(self, container_config: _Optional[_Union[ContainerCollectorConfig, _Mapping]] = ..., execute_config: _Optional[_Union[ExecuteCollectorConfig, _Mapping]] = ..., memexec_config: _Optional[_Union[MemExecCollectorConfig, _Mapping]] = ...) -> None: ...

class ConfigurationResponse(_message.Message):
    __slots__ = ("error", "msg", "version", "kernel_version")
    class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NO_ERROR: _ClassVar[ConfigurationResponse.ErrorCode]
        UNKNOWN: _ClassVar[ConfigurationResponse.ErrorCode]
    NO_ERROR: ConfigurationResponse.ErrorCode
    UNKNOWN: ConfigurationResponse.ErrorCode
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    error: ConfigurationResponse.ErrorCode
    msg: str
    version: int
    kernel_version: int
    def __init__(self, error: _Optional[_Union[ConfigurationResponse.ErrorCode, str]] = ..., msg: _Optional[str] = ..., version: _Optional[int] = ..., kernel_version: _Optional[int] = ...) -> None: ...
