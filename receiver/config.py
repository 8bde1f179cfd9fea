"""The configuration the receiver wants its guests to run."""

from csm_wire.gen import schema_pb2 as pb

DEFAULT_ARGV_LIMIT_BYTES = 4096
DEFAULT_ENVP_LIMIT_BYTES = 1024
# Environment variables worth keeping by default: what a process runs as and
# where, without the secrets that often travel in the environment.
DEFAULT_ENVP_ALLOWLIST = ("PATH", "HOME", "USER", "PWD", "SHELL", "TERM", "LANG")


def default_configuration() -> pb.ConfigurationRequest:
    """The fleet default: every collector on, bounded argv and env."""
    return pb.ConfigurationRequest(
        container_config=pb.ContainerCollectorConfig(enabled=True),
        execute_config=pb.ExecuteCollectorConfig(
            enabled=True,
            argv_limit=DEFAULT_ARGV_LIMIT_BYTES,
            envp_limit=DEFAULT_ENVP_LIMIT_BYTES,
            envp_allowlist=list(DEFAULT_ENVP_ALLOWLIST),
        ),
        memexec_config=pb.MemExecCollectorConfig(enabled=True),
    )
