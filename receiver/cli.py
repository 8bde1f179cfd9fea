"""The ``csm-receiver`` command: serve, migrate, demo, tokens, and the API
client (vms, ps, tree, config)."""

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from receiver.api.auth import add_token_to_file
from receiver.client import CLIENT_COMMANDS, add_client_commands, run_client
from receiver.errors import ReceiverError
from receiver.service import Service
from receiver.settings import Settings, add_settings_arguments, build_settings
from receiver.store.engine import create_engine, migrate

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csm-receiver", description="Host-side CSM security monitor for VMs"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the receiver service")
    add_settings_arguments(serve)
    migrate_cmd = commands.add_parser("migrate", help="bring the database up to date")
    add_settings_arguments(migrate_cmd)
    demo = commands.add_parser("demo", help="serve with a simulated fleet feeding it")
    add_settings_arguments(demo)
    token = commands.add_parser("token", help="manage API tokens")
    token_actions = token.add_subparsers(dest="token_command", required=True)
    add = token_actions.add_parser("add", help="create a token, print it once")
    add.add_argument("--role", choices=["viewer", "operator"], default="viewer")
    add.add_argument("--label", required=True, help="who holds it (in histories)")
    add.add_argument("--data-dir", default="./var", help="the receiver's data dir")
    add.add_argument("--tokens-file", help="default: <data-dir>/tokens")
    add_client_commands(commands)
    return parser


def add_token(args: argparse.Namespace) -> int:
    """Append a new token's digest to the tokens file and print the token."""
    path = Path(args.tokens_file or Path(args.data_dir) / "tokens")
    token = add_token_to_file(path, role=args.role, label=args.label)
    print(token)
    print(f"{args.role} token for {args.label} added to {path}", file=sys.stderr)
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run a command that does not start the service."""
    try:
        if args.command == "token":
            return add_token(args)
        return run_client(args)
    except ReceiverError as exc:
        print(f"csm-receiver: {exc}", file=sys.stderr)
        return 1


async def serve(settings: Settings) -> None:
    """Run the service until SIGINT or SIGTERM (SIGHUP reloads the rules)."""
    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.detector.reload_on_signal)
    try:
        await service.start()
        log.info("receiver running as host %s", settings.host)
        await stop.wait()
        log.info("stopping")
    finally:
        await service.stop()


async def run_migrations(settings: Settings) -> None:
    """Apply pending migrations to the configured database."""
    engine = create_engine(settings.db_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.command in CLIENT_COMMANDS or args.command == "token":
        return run_command(args)
    try:
        settings = build_settings(args)
    except ReceiverError as exc:
        print(f"csm-receiver: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("receiver.access").setLevel(logging.INFO)
    try:
        if args.command == "migrate":
            asyncio.run(run_migrations(settings))
        elif args.command == "demo":
            # The simulator lives with the benchmarks; only the demo needs it.
            from bench.demo import run_demo

            asyncio.run(run_demo(settings))
        else:
            asyncio.run(serve(settings))
    except ReceiverError as exc:
        print(f"csm-receiver: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
