"""The ``csm-guest`` command: run the collector, read its stats, steer it."""

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guest_lsm import control
from guest_lsm.config import (
    DEFAULT_BUILD_DIR,
    DEFAULT_CONTROL_SOCKET,
    DEFAULT_COUNTERS_INTERVAL_S,
    DEFAULT_HELLO_TIMEOUT_S,
    DEFAULT_REPLAY_BYTES,
    DEFAULT_REPLAY_EVENTS,
    Protocol,
    Settings,
)
from guest_lsm.errors import ConfigError, GuestError
from guest_lsm.kernel.backend import Backend
from guest_lsm.kernel.build import build_object

logger = logging.getLogger(__name__)

ENV_PREFIX = "CSM_GUEST_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError("expected on or off")
    return value == "on"


def _add_control(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control",
        type=Path,
        default=Path(_env("control") or DEFAULT_CONTROL_SOCKET),
        help="the agent's control socket (env CSM_GUEST_CONTROL)",
    )


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run the collector (as root)")
    run.add_argument(
        "--backend",
        choices=[backend.value for backend in Backend],
        default=_env("backend", "auto"),
    )
    run.add_argument("--cid", type=int, default=int(_env("cid", "2") or 2))
    run.add_argument("--port", type=int, default=int(_env("port", "4444") or 4444))
    run.add_argument(
        "--unix", type=Path, default=_env("unix"), help="dial a Unix socket instead"
    )
    _add_control(run)
    run.add_argument("--local-stream", type=Path, default=_env("local_stream"))
    run.add_argument(
        "--build-dir", type=Path, default=Path(_env("build_dir") or DEFAULT_BUILD_DIR)
    )
    run.add_argument("--config-file", type=Path, default=_env("config_file"))
    run.add_argument(
        "--enable-all",
        action="store_true",
        default=_env("enable_all") == "1",
        help="turn every collector on at start (testing)",
    )
    run.add_argument(
        "--bundle-root",
        type=Path,
        action="append",
        default=[],
        help="a directory of OCI bundles (repeatable)",
    )
    run.add_argument("--queue-frames", type=int, default=8192)
    run.add_argument("--heartbeat-s", type=float, default=5.0)
    _add_protocol(run)
    run.add_argument(
        "--nice",
        type=int,
        default=int(_env("nice", "10") or 10),
        help="scheduling niceness: the workload comes before the collector",
    )
    run.add_argument("--log-level", default=_env("log_level", "INFO"))


def _add_protocol(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--protocol",
        choices=[protocol.value for protocol in Protocol],
        default=_env("protocol", "auto"),
        help="auto: v2 with a fallback to v1 (env CSM_GUEST_PROTOCOL)",
    )
    run.add_argument(
        "--replay-events",
        type=int,
        default=int(_env("replay_events") or DEFAULT_REPLAY_EVENTS),
        help="events held until the host acknowledges them (v2)",
    )
    run.add_argument(
        "--replay-bytes",
        type=int,
        default=int(_env("replay_bytes") or DEFAULT_REPLAY_BYTES),
        help="bytes held until the host acknowledges them (v2)",
    )
    run.add_argument(
        "--hello-timeout-s",
        type=float,
        default=float(_env("hello_timeout_s") or DEFAULT_HELLO_TIMEOUT_S),
        help="how long auto waits for the host's hello before speaking v1",
    )
    run.add_argument(
        "--counters-s",
        type=float,
        default=float(_env("counters_s") or DEFAULT_COUNTERS_INTERVAL_S),
        help="how often the counters go to the host (v2)",
    )


def _add_config(sub: Any) -> None:
    config = sub.add_parser("config", help="show or change the running configuration")
    _add_control(config)
    config.add_argument("--all", type=_on_off, help="every collector on or off")
    config.add_argument("--execute", type=_on_off)
    config.add_argument("--memexec", type=_on_off)
    config.add_argument("--container", type=_on_off)
    config.add_argument("--argv-limit", type=int)
    config.add_argument("--envp-limit", type=int)
    config.add_argument(
        "--env-allow", action="append", help="variable name to keep (repeatable)"
    )
    config.add_argument("--env-allow-all", action="store_true")


def _add_report(sub: Any) -> None:
    report = sub.add_parser("report-container", help="describe a container")
    _add_control(report)
    which = report.add_mutually_exclusive_group(required=True)
    which.add_argument("--container-id", type=int)
    which.add_argument("--pid", type=int)
    for name in ("pod-namespace", "pod-name", "container-name", "image"):
        report.add_argument(f"--{name}", default="")
    report.add_argument("--label", action="append", default=[])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="csm-guest", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    stats = sub.add_parser("stats", help="print the running agent's counters")
    _add_control(stats)
    _add_config(sub)
    _add_report(sub)
    build = sub.add_parser("build", help="build the BPF object into the cache")
    build.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Map the run flags onto the settings object."""
    if args.replay_events < 1 or args.replay_bytes < 1:
        raise ConfigError("the replay buffer must hold at least one event")
    return Settings(
        backend=Backend(args.backend),
        cid=args.cid,
        port=args.port,
        unix=args.unix,
        control=args.control,
        local_stream=args.local_stream,
        build_dir=args.build_dir,
        config_file=args.config_file,
        enable_all=args.enable_all,
        bundle_roots=tuple(args.bundle_root),
        queue_frames=args.queue_frames,
        heartbeat_s=args.heartbeat_s,
        protocol=Protocol(args.protocol),
        replay_events=args.replay_events,
        replay_bytes=args.replay_bytes,
        hello_timeout_s=args.hello_timeout_s,
        counters_s=args.counters_s,
    )


def _changed_config(
    args: argparse.Namespace, current: dict[str, Any]
) -> dict[str, Any]:
    config = dict(current)
    if args.all is not None:
        for name in ("execute_enabled", "memexec_enabled", "container_enabled"):
            config[name] = args.all
    for flag, name in (
        ("execute", "execute_enabled"),
        ("memexec", "memexec_enabled"),
        ("container", "container_enabled"),
        ("argv_limit", "argv_limit"),
        ("envp_limit", "envp_limit"),
    ):
        if getattr(args, flag) is not None:
            config[name] = getattr(args, flag)
    if args.env_allow_all:
        config["envp_allowlist"] = []
    elif args.env_allow:
        config["envp_allowlist"] = list(args.env_allow)
    return config


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _command_config(args: argparse.Namespace) -> int:
    current = control.request(args.control, {"cmd": "config-get"})["config"]
    wanted = _changed_config(args, current)
    if wanted != current:
        current = control.request(
            args.control, {"cmd": "config-set", "config": wanted}
        )["config"]
    _print(current)
    return 0


def _command_report(args: argparse.Namespace) -> int:
    report = {
        "container_id": args.container_id,
        "pid": args.pid,
        "pod_namespace": args.pod_namespace,
        "pod_name": args.pod_name,
        "container_name": args.container_name,
        "image": args.image,
        "labels": args.label,
    }
    answer = control.request(args.control, {"cmd": "container", "report": report})
    _print({"container_id": answer["container_id"]})
    return 0


def _command_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from guest_lsm.service import run_collector

    # The ring buffer absorbs bursts, so the agent can yield the CPU to the
    # workload and catch up afterwards.
    if args.nice:
        os.nice(args.nice)

    asyncio.run(run_collector(settings_from_args(args)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``csm-guest``; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _command_run(args)
        if args.command == "stats":
            _print(control.request(args.control, {"cmd": "stats"})["stats"])
            return 0
        if args.command == "config":
            return _command_config(args)
        if args.command == "report-container":
            return _command_report(args)
        print(build_object(args.build_dir))
        return 0
    except GuestError as exc:
        print(f"csm-guest: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
