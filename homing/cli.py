"""The `homing` command.

    homing dev        local development: embedded SQLite, the QStash dev users, localhost allowed
    homing serve      production: needs a token, refuses private destinations
    homing migrate    apply schema migrations and exit (--check: only say whether it is needed)
    homing tokens     create, list and revoke API tokens in the store
    homing import     copy schedules, URL groups and queues from a QStash-compatible API
    homing backup     copy an SQLite store to a file, while its server runs
    homing restore    copy a backup into a new, empty data directory
    homing config-reference   print the settings reference (docs/configuration.md)

Every server setting is one row of `SERVER_OPTIONS`: the flag, its environment variable, its
defaults and its help. `--help` and the configuration reference are generated from that table,
so they cannot drift. An explicit flag wins over the environment, which wins over the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homing import __version__

CONSOLE_HINT = "open {base}/console"


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    help: str
    dev: str  # default in `homing dev`, as shown
    serve: str  # default in `homing serve`
    kind: Callable[[str], Any] = str
    is_switch: bool = False
    repeat: bool = False


SERVER_OPTIONS = (
    Option("--host", "HOMING_HOST", "address to listen on", "127.0.0.1", "0.0.0.0"),
    Option("--port", "HOMING_PORT", "port to listen on", "8080", "8080", int),
    Option("--data-dir", "HOMING_DATA_DIR", "folder for everything Homing writes", ".homing", ".homing"),
    Option(
        "--database",
        "HOMING_DATABASE_URL",
        "store: sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db",
        "sqlite:///<data-dir>/homing.db",
        "sqlite:///<data-dir>/homing.db",
    ),
    Option(
        "--token",
        "HOMING_TOKEN",
        "API token of the operator's account; repeat the flag (or separate with commas) for "
        "several tokens of that account",
        "(the dev users)",
        "required",
        repeat=True,
    ),
    Option("--current-signing-key", "HOMING_CURRENT_SIGNING_KEY", "current signing key of the --token account", "-", "required with --token"),
    Option("--next-signing-key", "HOMING_NEXT_SIGNING_KEY", "next signing key of the --token account", "-", "required with --token"),
    Option(
        "--allow-private-destinations",
        "HOMING_ALLOW_PRIVATE_DESTINATIONS",
        "deliver to loopback, private and link-local addresses",
        "on",
        "off",
        is_switch=True,
    ),
    Option("--max-body-size", "HOMING_MAX_BODY_SIZE", "largest message body, in bytes", "10485760", "10485760", int),
    Option("--shutdown-timeout", "HOMING_SHUTDOWN_TIMEOUT", "seconds that attempts in flight get to finish on SIGTERM", "8", "8", float),
    Option("--concurrency", "HOMING_CONCURRENCY", "attempts in flight at once (per node)", "512", "512", int),
    Option("--schedule-grace", "HOMING_SCHEDULE_GRACE", "seconds a missed cron tick may be late and still fire (once)", "3600", "3600", int),
    Option("--keep-unmatched-events", "HOMING_KEEP_UNMATCHED_EVENTS", "seconds an account-wide workflow notify that reaches no waiter is kept for the first run that waits for its event id (0: dropped, as on the hosted service)", "0", "0", int),
    Option("--metrics-path", "HOMING_METRICS_PATH", "where Prometheus metrics are served; 'off' disables them", "/metrics", "/metrics"),
    Option("--metrics-token", "HOMING_METRICS_TOKEN", "if set, /metrics requires 'Authorization: Bearer <token>'", "-", "-"),
    Option("--console-secret", "HOMING_CONSOLE_SECRET", "key that signs console sessions; give every node the same one to keep sign-ins across nodes and restarts (default: random per process)", "-", "-"),
    Option("--otel-endpoint", "HOMING_OTEL_ENDPOINT", "OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces: export OpenTelemetry spans of publishes and delivery attempts (needs pip install 'homing[otel]')", "-", "-"),
    Option(
        "--allow-unsafe-durability",
        "HOMING_ALLOW_UNSAFE_DURABILITY",
        "start even if PostgreSQL runs with fsync=off (dev only warns)",
        "on",
        "off",
        is_switch=True,
    ),
    Option("--role", "HOMING_ROLE", "what this node runs: all; api (the API, the console and the probes, no delivery); worker (delivery, schedules and timed tasks, only the probes); api and worker need PostgreSQL", "all", "all"),
    Option("--lease", "HOMING_LEASE", "seconds a node holds a claimed attempt without renewing it: a dead node's attempts are delivered again this long after it died", "30", "30", float),
    Option("--database-acquire-timeout", "HOMING_DATABASE_ACQUIRE_TIMEOUT", "PostgreSQL: seconds a request waits for a free database connection before it is answered 503", "2", "2", float),
    Option("--database-statement-timeout", "HOMING_DATABASE_STATEMENT_TIMEOUT", "PostgreSQL: seconds any one statement may take (the server's statement_timeout; the client gives up 0.5 s later) before the request is answered 503 (a database that stops answering altogether is noticed within about 2 s, whatever this is)", "30", "30", float),
    Option("--log-format", "HOMING_LOG_FORMAT", "text or json (one JSON object per line)", "text", "json"),
    Option("--log-level", "HOMING_LOG_LEVEL", "debug, info, warning or error", "info", "info"),
)  # fmt: skip
DEV_ONLY = (
    Option(
        "--backoff-scale",
        "HOMING_BACKOFF_SCALE",
        "multiply the default retry backoff (0.01 turns 12 s into 120 ms)",
        "1",
        "-",
        float,
    ),
)
STORE_OPTIONS = ("--data-dir", "--database")


def _env_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SystemExit(f"homing: expected a boolean, got {value!r}")


def _add(parser: argparse.ArgumentParser, option: Option, environ: Mapping[str, str]) -> None:
    help_text = f"{option.help} (env: {option.env})"
    raw = environ.get(option.env)
    dest = option.flag.lstrip("-").replace("-", "_")
    if option.is_switch:
        default = None if raw is None else _env_bool(raw)
        parser.add_argument(
            option.flag,
            dest=dest,
            action="store_const",
            const=True,
            default=default,
            help=help_text,
        )
    elif option.repeat:
        default_list = [t.strip() for t in raw.split(",") if t.strip()] if raw else None
        parser.add_argument(option.flag, dest=dest, action="append", default=None, help=help_text)
        parser.set_defaults(**{dest + "_env": default_list})
    else:
        default = None if raw is None else option.kind(raw)
        parser.add_argument(
            option.flag, dest=dest, type=option.kind, default=default, help=help_text
        )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homing", description="A self-hosted, QStash-compatible message queue."
    )
    parser.add_argument("--version", action="version", version=f"homing {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("dev", "local development: embedded SQLite, the QStash dev users, localhost allowed"),
        ("serve", "production: requires a token, refuses private destinations"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        for option in SERVER_OPTIONS + (DEV_ONLY if name == "dev" else ()):
            _add(cmd, option, environ)
    store_options = [o for o in SERVER_OPTIONS if o.flag in STORE_OPTIONS]
    migrate = sub.add_parser("migrate", help="apply schema migrations to the store and exit")
    for option in store_options:
        _add(migrate, option, environ)
    migrate.add_argument(
        "--check",
        action="store_true",
        help="only say whether the store needs migrating, changing nothing: exit 0 if it is up "
        f"to date, {MIGRATE_NEEDED} if it needs migrating, {MIGRATE_UNKNOWN} if that cannot "
        "be told (store unreachable, or migrated by a newer Homing)",
    )
    tokens = sub.add_parser("tokens", help="manage API tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tsub.add_parser(
        "create", help="create a token (a new account, or another token of one)"
    )
    create.add_argument("--account", required=True, help="account id (created if new)")
    create.add_argument("--read-only", action="store_true", help="the token may only read")
    create.add_argument("--name", help="a unique name to find and revoke the token by")
    tlist = tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    revoke = tsub.add_parser("revoke", help="revoke a token by id or name, at once on every node")
    revoke.add_argument("token", metavar="ID|NAME")
    for cmd in (create, tlist, revoke):
        for option in store_options:
            _add(cmd, option, environ)
    backup = sub.add_parser(
        "backup", help="copy an SQLite store to a new file, consistently, while its server runs"
    )
    backup.add_argument("--to", required=True, metavar="FILE", help="the backup file to create")
    restore = sub.add_parser(
        "restore", help="copy a backup made by `homing backup` into a new, empty data directory"
    )
    restore.add_argument("--from", dest="from_file", required=True, metavar="FILE")
    for cmd in (backup, restore):
        for option in store_options:
            _add(cmd, option, environ)
    imp = sub.add_parser(
        "import", help="copy schedules, URL groups and queues from a QStash-compatible API"
    )
    imp.add_argument(
        "--from-url", required=True, help="source base URL, e.g. https://qstash.upstash.io"
    )
    imp.add_argument("--from-token", required=True)
    imp.add_argument("--to-url", required=True, help="Homing base URL")
    imp.add_argument("--to-token", required=True)
    imp.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    sub.add_parser("config-reference", help="print the settings reference as Markdown")
    return parser


def settings_from_args(args: argparse.Namespace) -> Any:
    from homing.config import Settings, dev_accounts, operator_accounts, role_problem
    from homing.headers import Limits

    dev = args.command == "dev"
    accounts = list(dev_accounts()) if dev else []
    tokens = args.token or getattr(args, "token_env", None) or []
    if tokens:
        if not (args.current_signing_key and args.next_signing_key):
            raise SystemExit("homing: --token needs --current-signing-key and --next-signing-key")
        accounts += operator_accounts(tokens, args.current_signing_key, args.next_signing_key)
    elif not dev:
        raise SystemExit("homing serve: configure a token with --token (or HOMING_TOKEN)")
    if args.otel_endpoint:
        from homing.telemetry import endpoint_problem

        if problem := endpoint_problem(args.otel_endpoint):
            raise SystemExit(f"homing: {problem}")
    metrics_path = args.metrics_path or "/metrics"
    lease_s = 30.0 if args.lease is None else args.lease
    if not 1 <= lease_s <= 3600:
        raise SystemExit(f"homing: --lease must be between 1 and 3600 seconds, got {lease_s:g}")
    role = (args.role or "all").strip().lower()
    shared = (args.database or "").startswith(("postgresql://", "postgres://"))
    if problem := role_problem(role, single_node=not shared):
        raise SystemExit(f"homing {args.command}: {problem}")
    acquire_timeout = _positive("--database-acquire-timeout", args.database_acquire_timeout, 2.0)
    statement_timeout = _positive(
        "--database-statement-timeout", args.database_statement_timeout, 30.0
    )
    return Settings(
        mode=args.command,
        host=args.host or ("127.0.0.1" if dev else "0.0.0.0"),
        port=args.port or 8080,
        data_dir=args.data_dir or ".homing",
        database_url=args.database,
        accounts=tuple(accounts),
        allow_private_destinations=True if dev else bool(args.allow_private_destinations),
        max_body_size=args.max_body_size or 10 * 1024 * 1024,
        limits=Limits(),
        shutdown_timeout_s=8.0 if args.shutdown_timeout is None else args.shutdown_timeout,
        concurrency=args.concurrency or 512,
        schedule_grace_ms=(3600 if args.schedule_grace is None else args.schedule_grace) * 1000,
        backoff_scale=getattr(args, "backoff_scale", None) or 1.0,
        keep_unmatched_events_ms=max(0, args.keep_unmatched_events or 0) * 1000,
        metrics_path="" if metrics_path == "off" else metrics_path,
        metrics_token=args.metrics_token,
        otel_endpoint=args.otel_endpoint or None,
        console_secret=args.console_secret or None,
        allow_unsafe_durability=dev or bool(args.allow_unsafe_durability),
        log_format=args.log_format or ("text" if dev else "json"),
        role=role,
        lease_ms=int(lease_s * 1000),
        database_acquire_timeout_s=acquire_timeout,
        database_statement_timeout_s=statement_timeout,
    )


def _positive(flag: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if not value > 0:
        raise SystemExit(f"homing: {flag} must be a positive number of seconds, not {value}")
    return value


def store_url(args: argparse.Namespace) -> str:
    import os

    if args.database:
        return str(args.database)
    return "sqlite:///" + os.path.join(args.data_dir or ".homing", "homing.db")


def unwritable_store(url: str) -> str | None:
    """Why a server could not write its SQLite store, checked before anything is created."""
    import errno
    import os

    from homing.config import sqlite_path

    if not url.startswith("sqlite:"):
        return None
    folder = os.path.dirname(os.path.abspath(sqlite_path(url)))
    existing = folder
    while not os.path.isdir(existing):  # the nearest folder that exists will hold the new ones
        existing = os.path.dirname(existing)
    # access() also answers "no" on a read-only filesystem for root, who may write anywhere else.
    if os.access(existing, os.W_OK):
        return None
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    cause = os.strerror(errno.EROFS if read_only else errno.EACCES)
    return (
        f"cannot write to the data directory {folder}: {cause}; Homing needs a writable --data-dir"
    )


def banner(settings: Any) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.port}"
    lines = [
        f"Homing {__version__} ({settings.mode}) listening on {base}",
        f"  store:   {settings.store_url}",
    ]
    if settings.role == "all":
        lines.append(f"  console: {base}/console")
    else:
        lines.append(f"  role:    {settings.role}")
        if settings.role == "api":
            lines.append(f"  console: {base}/console")
    if settings.mode == "dev":
        user = settings.accounts[0]
        lines += [
            "",
            "Development credentials (public, the same as the QStash dev server's):",
            f"  token:               {user.token}",
            f"  current signing key: {user.current_key}",
            f"  next signing key:    {user.next_key}",
            "",
            "Paste into your app's .env:",
            f"QSTASH_URL={base}",
            f"QSTASH_TOKEN={user.token}",
            f"QSTASH_CURRENT_SIGNING_KEY={user.current_key}",
            f"QSTASH_NEXT_SIGNING_KEY={user.next_key}",
            "",
        ]
    return "\n".join(lines)


def config_reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated by `homing config-reference` from the option table in `homing/cli.py`;",
        "a test fails when this file and the code disagree.",
        "",
        "| flag | environment variable | `dev` default | `serve` default | meaning |",
        "|---|---|---|---|---|",
    ]
    for o in SERVER_OPTIONS + DEV_ONLY:
        lines.append(f"| `{o.flag}` | `{o.env}` | {o.dev} | {o.serve} | {o.help} |")
    lines += [
        "",
        "`--backoff-scale` exists only in `homing dev`. An explicit flag wins over its environment",
        "variable, which wins over the defaults of the mode. Switches take `1/true/yes/on` or",
        "`0/false/no/off` in the environment.",
        "",
    ]
    return "\n".join(lines)


async def _tokens(args: argparse.Namespace) -> int:
    from homing import ids
    from homing.clock import SystemClock
    from homing.models import SigningKeys
    from homing.storage import open_storage

    storage = open_storage(store_url(args), exclusive=False)
    await storage.open()
    try:
        now = SystemClock().now_ms()
        if args.tokens_command == "create":
            token = ids.token()
            info = await storage.create_token(
                args.account,
                token,
                name=args.name,
                read_only=args.read_only,
                now_ms=now,
                new_keys=SigningKeys(ids.signing_key(), ids.signing_key()),
            )
            mode = "read-only" if info.read_only else "read-write"
            print(f"created {mode} token {info.id} for account {info.account_id}")
            print("token (shown once, store it now):")
            print(token)
        elif args.tokens_command == "list":
            print(f"{'id':22} {'account':24} {'name':16} {'access':10} state")
            for t in await storage.list_tokens():
                state = "revoked" if t.revoked_ms else "active"
                access = "read-only" if t.read_only else "read-write"
                print(f"{t.id:22} {t.account_id:24} {t.name or '-':16} {access:10} {state}")
        else:
            revoked = await storage.revoke_token(args.token, now_ms=now)
            if revoked is None:
                print(f"no active token with id or name {args.token!r}", file=sys.stderr)
                return 1
            print(f"revoked {revoked.id} ({revoked.account_id})")
        return 0
    finally:
        await storage.close()


MIGRATE_NEEDED = 1
MIGRATE_UNKNOWN = 2


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _migrate(args: argparse.Namespace) -> int:
    from homing.storage import open_storage
    from homing.storage.migrate import schema_state

    url = store_url(args)
    shown = _without_password(url)
    try:
        state = await schema_state(url)
    except Exception as exc:  # unreachable, unreadable: the operator reads why, no traceback
        print(f"homing migrate: cannot read the schema of {shown}: {exc}", file=sys.stderr)
        return MIGRATE_UNKNOWN
    if state.unknown:
        newer = ", ".join(f"{v:04d}" for v in state.unknown)
        print(
            f"{shown} was migrated by a newer Homing (versions {newer} are unknown to "
            f"homing {__version__}); migrations only go forward: run that release or a later one",
            file=sys.stderr,
        )
        return MIGRATE_UNKNOWN
    pending = ", ".join(f"{v:04d}" for v in state.pending)
    if args.check:
        if not state.exists:
            print(f"needs migrating: no store yet at {shown}; migrating creates it ({pending})")
            return MIGRATE_NEEDED
        if state.pending:
            print(f"needs migrating: {shown} lacks {pending}")
            return MIGRATE_NEEDED
        print(f"up to date: {shown} (schema version {max(state.known):04d})")
        return 0
    storage = open_storage(url, exclusive=False)
    await storage.open()
    await storage.close()
    done = f"schema version {max(state.known):04d}"
    print(f"migrated {shown}: {done}" + (f" (it lacked {pending})" if pending else ", no change"))
    return 0


def _backup_or_restore(args: argparse.Namespace) -> int:
    from homing.config import sqlite_path
    from homing.storage.sqlite.backup import BackupError, backup, restore

    url = store_url(args)
    if not url.startswith("sqlite:"):
        print(
            f"homing {args.command}: only for SQLite stores; back up PostgreSQL with its own "
            "tools (pg_dump, pg_basebackup): see docs/operations.md",
            file=sys.stderr,
        )
        return 2
    path = sqlite_path(url)
    try:
        if args.command == "backup":
            summary = backup(path, args.to)
            print(
                f"backed up {path} to {args.to}: {summary.messages} messages, {summary.bytes} bytes"
            )
        else:
            summary = restore(args.from_file, path)
            print(
                f"restored {args.from_file} to {path}: {summary.messages} messages; start Homing "
                "on this data directory"
            )
    except BackupError as exc:
        print(f"homing {args.command}: {exc.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    import os

    environ = os.environ if environ is None else environ
    args = build_parser(environ).parse_args(argv)
    if args.command == "config-reference":
        print(config_reference(), end="")
        return
    if args.command == "migrate":
        raise SystemExit(asyncio.run(_migrate(args)))
    if args.command == "tokens":
        from homing.errors import HomingError

        try:
            raise SystemExit(asyncio.run(_tokens(args)))
        except HomingError as exc:  # a taken name, an unreachable store: one line, no trace
            raise SystemExit(f"homing: {exc.message}") from None
    if args.command in ("backup", "restore"):
        raise SystemExit(_backup_or_restore(args))
    if args.command == "import":
        from homing.importer import run_import

        raise SystemExit(
            run_import(
                from_url=args.from_url,
                from_token=args.from_token,
                to_url=args.to_url,
                to_token=args.to_token,
                dry_run=args.dry_run,
            )
        )
    from homing.logs import configure_logging
    from homing.server import serve

    settings = settings_from_args(args)
    if problem := unwritable_store(settings.store_url):
        raise SystemExit(f"homing: {problem}")
    configure_logging(args.log_level or "info", settings.log_format)
    print(banner(settings), flush=True)
    serve(settings, log_level=(args.log_level or "info").lower())


if __name__ == "__main__":
    main(sys.argv[1:])
