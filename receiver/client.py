"""The command-line client: fleet, processes, trees and configuration from
a running receiver's API, readable in a terminal or as JSON."""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from receiver.errors import ReceiverError
from receiver.settings import DEFAULT_API

REQUEST_TIMEOUT_S = 30.0
TOKEN_FILE = "api-token"


class ClientError(ReceiverError):
    """The API could not be reached, or refused the request."""


class ApiClient:
    """A small blocking JSON client for the receiver's API."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, Any]:
        """Send a request; return the status and the decoded JSON answer."""
        url = self.base_url + urllib.parse.quote(path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ClientError(_problem_text(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach {self.base_url}: {reason}") from None

    def get(self, path: str, **params: str) -> Any:
        """GET ``path`` and return its JSON."""
        return self.call("GET", path, params or None)[1]

    def pages(self, path: str, limit: int, **params: str) -> list[dict[str, Any]]:
        """Up to ``limit`` items of a list, following its cursors."""
        items: list[dict[str, Any]] = []
        query = dict(params, limit=str(min(limit, 1000)))
        while len(items) < limit:
            page = self.get(path, **query)
            items.extend(page["items"])
            if page["next"] is None:
                break
            query["cursor"] = page["next"]
        return items[:limit]


def _problem_text(exc: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(exc.read())
    except ValueError:
        return f"{exc.code} {exc.reason}"
    detail = problem.get("detail")
    return f"{exc.code} {problem.get('title', exc.reason)}" + (
        f": {detail}" if detail else ""
    )


def base_url(api: str) -> str:
    """``HOST:PORT`` or a URL, as a URL."""
    return api if "://" in api else f"http://{api}"


def read_token(args: argparse.Namespace) -> str:
    """The token: --token, CSM_API_TOKEN, or the token file."""
    if args.token:
        return str(args.token)
    if os.environ.get("CSM_API_TOKEN"):
        return os.environ["CSM_API_TOKEN"]
    path = Path(args.token_file or Path(args.data_dir) / TOKEN_FILE)
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ClientError(f"token file {path}: {exc.strerror}") from None


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the API is and how to authenticate."""
    parser.add_argument(
        "--api",
        default=os.environ.get("CSM_API", DEFAULT_API),
        help="the receiver's API, HOST:PORT or URL",
    )
    parser.add_argument("--token", help="an API token (default: the token file)")
    parser.add_argument("--token-file", help="file holding the token")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("CSM_DATA_DIR", "./var"),
        help="the receiver's data dir, whose api-token is read by default",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def add_client_commands(commands: Any) -> None:
    """The client subcommands of ``csm-receiver``."""
    vms = commands.add_parser("vms", help="list VMs")
    add_client_arguments(vms)

    ps = commands.add_parser("ps", help="list a VM's processes")
    add_client_arguments(ps)
    ps.add_argument("vm")
    ps.add_argument("--alive", action="store_true", help="only running ones")
    ps.add_argument("--container-id", help="only this container")
    ps.add_argument("--limit", type=int, default=200, help="at most this many")

    tree = commands.add_parser("tree", help="draw a VM's process tree")
    add_client_arguments(tree)
    tree.add_argument("vm")
    tree.add_argument("--at", help="what was alive then (RFC 3339 or ns)")
    tree.add_argument("--container-id", help="only this container")

    config = commands.add_parser("config", help="show or set configuration")
    actions = config.add_subparsers(dest="config_command", required=True)
    show = actions.add_parser("show", help="show a VM's configuration")
    add_client_arguments(show)
    show.add_argument("vm", help="a VM name, or '*' for the fleet default")
    change = actions.add_parser("set", help="change a VM's configuration")
    add_client_arguments(change)
    change.add_argument("vm", help="a VM name, or '*' for the fleet default")
    change.add_argument("--file", help="a JSON configuration to send whole")
    change.add_argument(
        "assignments",
        nargs="*",
        metavar="PART.FIELD=VALUE",
        help="e.g. execute_config.argv_limit=2048 (applied to the current one)",
    )


def run_client(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run a client subcommand; return the exit status."""
    out = sys.stdout if out is None else out
    client = ApiClient(base_url(args.api), read_token(args))
    command = args.command
    if command == "config":
        command = f"config {args.config_command}"
    handler: Callable[[ApiClient, argparse.Namespace, TextIO], int] = _COMMANDS[command]
    return handler(client, args, out)


def _vms(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    items = client.get("/api/v1/vms")["items"]
    if args.json:
        return _dump(items, out)
    rows = [
        [
            vm["name"],
            vm["transport"],
            vm["address"],
            vm["health"],
            vm["protocol"] or "-",
            str(len(vm["boots"])),
        ]
        for vm in items
    ]
    _table(["NAME", "TRANSPORT", "ADDRESS", "STATE", "PROTOCOL", "BOOTS"], rows, out)
    return 0


def _ps(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    params: dict[str, str] = {}
    if args.alive:
        params["alive"] = "true"
    if args.container_id:
        params["container_id"] = args.container_id
    items = client.pages(f"/api/v1/vms/{args.vm}/processes", args.limit, **params)
    if args.json:
        return _dump(items, out)
    rows = [
        [
            str(p["pid"]),
            str(p["parent_pid"] or "-"),
            p["uuid"],
            str(p["container_id"] or "-"),
            (p["started_at"] or "-")[:23],
            "exited" if p["exited_at"] else "alive",
            _command_line(p),
        ]
        for p in items
    ]
    _table(["PID", "PPID", "UUID", "CTR", "STARTED", "STATE", "COMMAND"], rows, out)
    return 0


def _command_line(process: dict[str, Any]) -> str:
    argv = process.get("argv") or []
    binary = process.get("binary") or "?"
    return " ".join(argv) if argv else binary


def _tree(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    params: dict[str, str] = {}
    if args.at:
        params["at"] = args.at
    if args.container_id:
        params["container_id"] = args.container_id
    tree = client.get(f"/api/v1/vms/{args.vm}/tree", **params)
    if args.json:
        return _dump(tree, out)
    for line in draw_tree(tree["items"], tree["roots"]):
        print(line, file=out)
    if tree["truncated"]:
        print("(truncated)", file=out)
    return 0


def draw_tree(items: list[dict[str, Any]], roots: Iterable[str]) -> list[str]:
    """The tree as lines with box-drawing branches."""
    by_uuid = {p["uuid"]: p for p in items}
    children: dict[str, list[str]] = {}
    for process in items:
        parent = process["parent_uuid"]
        if parent is not None and parent in by_uuid:
            children.setdefault(parent, []).append(process["uuid"])
    lines: list[str] = []
    seen: set[str] = set()
    # A stack, not recursion: a guest's tree can be deeper than Python's.
    stack = [(root, "", "", "") for root in reversed(list(roots)) if root in by_uuid]
    while stack:
        uuid, prefix, branch, below = stack.pop()
        if uuid in seen:
            continue
        seen.add(uuid)
        lines.append(prefix + branch + _tree_label(by_uuid[uuid]))
        kids = children.get(uuid, [])
        for index in reversed(range(len(kids))):
            last = index == len(kids) - 1
            stack.append(
                (
                    kids[index],
                    prefix + below,
                    "└── " if last else "├── ",
                    "    " if last else "│   ",
                )
            )
    return lines


def _tree_label(process: dict[str, Any]) -> str:
    label = f"{process['pid']} {_command_line(process)}"
    if process["container_id"]:
        label += f"  [container {process['container_id']}]"
    if process["exec_session_id"]:
        label += f" [exec {process['exec_session_id']}]"
    if process["exited_at"]:
        label += " (exited)"
    return label


def _config_path(vm: str) -> str:
    return "/api/v1/config" if vm == "*" else f"/api/v1/vms/{vm}/config"


def _config_show(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    shown = client.get(_config_path(args.vm))
    if args.json:
        return _dump(shown, out)
    print(f"source: {shown['source']} (generation {shown['generation']})", file=out)
    if shown.get("updated_by"):
        print(f"changed: {shown['updated_at']} by {shown['updated_by']}", file=out)
    if "pending" in shown:
        print(f"pending: {'yes' if shown['pending'] else 'no'}", file=out)
    answer = shown.get("last_answer")
    if answer:
        print(f"last answer: {answer['error']} {answer.get('msg') or ''}", file=out)
    for part, value in shown["config"].items():
        print(f"{part}: {'off' if value is None else json.dumps(value)}", file=out)
    return 0


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``part.field=value`` as a key path and a JSON-ish value."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ClientError(f"{text!r}: expected PART.FIELD=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw.split(",") if key.endswith("allowlist") else raw
    if key.endswith("allowlist") and isinstance(value, str):
        value = [value]
    return key.split("."), value


def apply_assignments(config: dict[str, Any], assignments: list[str]) -> None:
    """Apply ``part.field=value`` changes to ``config`` in place."""
    for text in assignments:
        path, value = parse_assignment(text)
        target = config
        for name in path[:-1]:
            if target.get(name) is None:
                target[name] = {}
            target = target[name]
        target[path[-1]] = value


def _config_set(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.file:
        try:
            config = json.loads(Path(args.file).read_text())
        except (OSError, ValueError) as exc:
            raise ClientError(f"--file {args.file}: {exc}") from None
    else:
        config = client.get(_config_path(args.vm))["config"]
    apply_assignments(config, args.assignments)
    _, result = client.call("PUT", _config_path(args.vm), body=config)
    if args.json:
        _dump(result, out)
    elif args.vm == "*":
        print(f"fleet default stored (generation {result['generation']})", file=out)
        for vm, outcome in result["vms"].items():
            answer = outcome["answer"]
            said = answer["error"] if answer else outcome["delivery"]
            print(f"  {vm}: {said}", file=out)
    else:
        print(f"{result['status']}: {result['detail']}", file=out)
    return 1 if result.get("status") == "rejected" else 0


def _dump(value: Any, out: TextIO) -> int:
    json.dump(value, out, indent=2)
    print(file=out)
    return 0


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]), file=out)


_COMMANDS: dict[str, Callable[[ApiClient, argparse.Namespace, TextIO], int]] = {
    "vms": _vms,
    "ps": _ps,
    "tree": _tree,
    "config show": _config_show,
    "config set": _config_set,
}
CLIENT_COMMANDS = frozenset({"vms", "ps", "tree", "config"})
