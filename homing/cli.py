"""The `homing` command: `homing dev` for a laptop, `homing serve` for production.

Every flag has an environment variable (shown in `--help`); an explicit flag wins over the
environment, which wins over the mode's defaults.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from homing import __version__
from homing.config import AccountSeed, Settings, account_for_token, dev_accounts
from homing.headers import Limits


def _env_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SystemExit(f"homing: expected a boolean, got {value!r}")


class _EnvDefault(argparse.Action):
    """An option that falls back to an environment variable, named in the help text."""

    def __init__(self, *args: Any, envvar: str, environ: Mapping[str, str], **kwargs: Any) -> None:
        self.envvar = envvar
        kwargs["help"] = f"{kwargs.get('help', '')} (env: {envvar})"
        if envvar in environ:
            raw = environ[envvar]
            kind = kwargs.get("type")
            if kwargs.get("nargs") == 0:
                kwargs["default"] = _env_bool(raw)
            else:
                kwargs["default"] = kind(raw) if kind else raw
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def _common(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    def add(*names: str, envvar: str, **kw: Any) -> None:
        parser.add_argument(*names, action=_EnvDefault, envvar=envvar, environ=environ, **kw)

    add("--host", envvar="HOMING_HOST", help="address to listen on")
    add("--port", envvar="HOMING_PORT", type=int, help="port to listen on (default 8080)")
    add(
        "--data-dir",
        envvar="HOMING_DATA_DIR",
        help="folder for everything Homing writes (default ./.homing)",
    )
    add(
        "--database",
        envvar="HOMING_DATABASE_URL",
        help="sqlite:///path (default <data-dir>/homing.db)",
    )
    add(
        "--token",
        envvar="HOMING_TOKEN",
        help="an API token; adds an account with the two signing keys",
    )
    add(
        "--current-signing-key",
        envvar="HOMING_CURRENT_SIGNING_KEY",
        help="current signing key of --token's account",
    )
    add(
        "--next-signing-key",
        envvar="HOMING_NEXT_SIGNING_KEY",
        help="next signing key of --token's account",
    )
    add(
        "--allow-private-destinations",
        envvar="HOMING_ALLOW_PRIVATE_DESTINATIONS",
        nargs=0,
        help="allow loopback, private and link-local destinations (on in dev)",
    )
    add(
        "--max-body-size",
        envvar="HOMING_MAX_BODY_SIZE",
        type=int,
        help="largest message body in bytes (default 10 MiB)",
    )
    add(
        "--shutdown-timeout",
        envvar="HOMING_SHUTDOWN_TIMEOUT",
        type=float,
        help="seconds to let attempts in flight finish on SIGTERM (default 8)",
    )
    add(
        "--log-level",
        envvar="HOMING_LOG_LEVEL",
        help="debug, info, warning or error (default info)",
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homing", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"homing {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser(
        "dev", help="local development: embedded SQLite, dev users, localhost allowed"
    )
    _common(dev, environ)
    dev.add_argument(
        "--backoff-scale",
        action=_EnvDefault,
        envvar="HOMING_BACKOFF_SCALE",
        environ=environ,
        type=float,
        help="multiply the default retry backoff (e.g. 0.01 for 120 ms instead of 12 s; default 1)",
    )
    serve = sub.add_parser(
        "serve", help="production: requires a token, refuses private destinations"
    )
    _common(serve, environ)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    dev = args.command == "dev"
    accounts: list[AccountSeed] = list(dev_accounts()) if dev else []
    if args.token:
        if not (args.current_signing_key and args.next_signing_key):
            raise SystemExit("homing: --token needs --current-signing-key and --next-signing-key")
        accounts.append(
            account_for_token(args.token, args.current_signing_key, args.next_signing_key)
        )
    elif not dev:
        raise SystemExit("homing serve: configure a token with --token (or HOMING_TOKEN)")
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
        backoff_scale=getattr(args, "backoff_scale", None) or 1.0,
    )


def banner(settings: Settings) -> str:
    base = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
    lines = [
        f"Homing {__version__} ({settings.mode}) listening on {base}",
        f"  store: {settings.store_url}",
    ]
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


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    environ = os.environ if environ is None else environ
    args = build_parser(environ).parse_args(argv)
    settings = settings_from_args(args)
    level = (args.log_level or "info").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(banner(settings), flush=True)
    from homing.server import serve

    serve(settings, log_level=level.lower())


if __name__ == "__main__":
    main(sys.argv[1:])
