"""The ``csm-bench`` command: simulate, ingest, scale."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.ingest import run_ingest_command
from bench.protocols import PROTOCOLS
from bench.scale import run_scale_command
from bench.simulate import DEFAULT_PORT, FleetRun, SimTarget, run_fleet, write_manifest
from bench.soak import add_soak_arguments, run_soak_command

log = logging.getLogger(__name__)


def parse_target(text: str, port: int) -> SimTarget:
    """Parse ``NAME=hybrid:PATH``, the receiver's own ``--vm`` syntax."""
    name, sep, target = text.partition("=")
    kind, colon, path = target.partition(":")
    if not sep or kind != "hybrid" or not colon or not path:
        raise argparse.ArgumentTypeError(f"--vm {text!r}: expected NAME=hybrid:PATH")
    return SimTarget(name, path, port)


def _add_simulate(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    simulate = commands.add_parser(
        "simulate", help="stream realistic guest workloads into a receiver"
    )
    simulate.add_argument(
        "--vm", action="append", required=True, help="NAME=hybrid:PATH (repeatable)"
    )
    simulate.add_argument("--port", type=int, default=DEFAULT_PORT)
    simulate.add_argument(
        "--events-per-vm", type=int, default=10_000, help="0 streams forever"
    )
    simulate.add_argument(
        "--rate", type=float, default=0.0, help="events/s per VM; 0 is flat out"
    )
    simulate.add_argument("--protocol", choices=sorted(PROTOCOLS), default="v1")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--manifest", type=Path, help="write {vm: [uuids]} here")
    simulate.add_argument(
        "--pregenerate",
        action="store_true",
        help="encode every event before connecting (load tests)",
    )
    simulate.add_argument("--heartbeat-interval-s", type=float, default=5.0)
    simulate.add_argument(
        "--hold-s", type=float, default=0.0, help="stay connected after sending"
    )


def _add_ingest(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ingest = commands.add_parser(
        "ingest", help="events/s end to end, beside a plain COPY of the same rows"
    )
    ingest.add_argument("--quick", action="store_true", help="a run of under 2 min")
    ingest.add_argument(
        "--db",
        action="append",
        help="postgresql://... admin DSN or sqlite (repeatable; default both)",
    )
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    ingest.add_argument("--seed", type=int, default=1)


def _add_scale(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    scale = commands.add_parser(
        "scale", help="1,000 connected VMs; queries over millions of processes"
    )
    scale.add_argument("--vms", type=int, default=1000)
    scale.add_argument("--processes", type=int, default=10_000_000)
    scale.add_argument("--tree", type=int, default=10_000, help="container tree size")
    scale.add_argument("--db", help="PostgreSQL admin DSN")
    scale.add_argument("--json", action="store_true")
    scale.add_argument(
        "--keep", action="store_true", help="keep (and reuse) the query database"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csm-bench", description="Benchmarks and the guest-fleet simulator"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_simulate(commands)
    _add_ingest(commands)
    _add_scale(commands)
    add_soak_arguments(
        commands.add_parser("soak", help="hostile and normal guests for a set time")
    )
    return parser


def simulate(args: argparse.Namespace) -> int:
    """Run the simulator until every VM has sent its events."""
    try:
        targets = [parse_target(text, args.port) for text in args.vm]
    except argparse.ArgumentTypeError as exc:
        print(f"csm-bench: {exc}", file=sys.stderr)
        return 2
    run = FleetRun(
        events_per_vm=args.events_per_vm or None,
        rate_per_vm=args.rate,
        protocol=args.protocol,
        seed=args.seed,
        pregenerate=args.pregenerate,
        real_time=not args.pregenerate,
        heartbeat_interval_s=args.heartbeat_interval_s,
        hold_s=args.hold_s,
    )
    try:
        results = asyncio.run(run_fleet(targets, run))
    except OSError as exc:
        print(f"csm-bench: {exc}", file=sys.stderr)
        return 1
    if args.manifest is not None:
        write_manifest(args.manifest, results)
    events = sum(result.events for result in results)
    processes = sum(len(result.uuids) for result in results)
    print(f"sent {events} events about {processes} processes from {len(results)} VMs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(arguments)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "simulate":
        return simulate(args)
    if args.command == "ingest":
        return run_ingest_command(args, arguments)
    if args.command == "soak":
        return run_soak_command(args, arguments)
    return run_scale_command(args, arguments)


if __name__ == "__main__":
    sys.exit(main())
