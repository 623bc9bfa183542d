"""The PostgreSQL timeouts are settings like any other: flag, environment, defaults."""

from __future__ import annotations

import pytest

from homing.cli import build_parser, settings_from_args
from homing.config import Settings


def test_database_timeouts_come_from_flags_or_the_environment() -> None:
    defaults = settings_from_args(build_parser({}).parse_args(["dev"]))
    assert (defaults.database_acquire_timeout_s, defaults.database_statement_timeout_s) == (
        Settings().database_acquire_timeout_s,
        Settings().database_statement_timeout_s,
    )
    environ = {"HOMING_DATABASE_ACQUIRE_TIMEOUT": "0.5", "HOMING_DATABASE_STATEMENT_TIMEOUT": "3"}
    from_env = settings_from_args(build_parser(environ).parse_args(["dev"]))
    assert (from_env.database_acquire_timeout_s, from_env.database_statement_timeout_s) == (0.5, 3)
    args = ["dev", "--database-statement-timeout", "1.5", "--database-acquire-timeout", "4"]
    from_flags = settings_from_args(build_parser(environ).parse_args(args))
    assert (from_flags.database_acquire_timeout_s, from_flags.database_statement_timeout_s) == (
        4,
        1.5,
    )


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_timeout_must_be_positive(value: str) -> None:
    args = build_parser({}).parse_args(["dev", "--database-statement-timeout", value])
    with pytest.raises(SystemExit, match="must be a positive number of seconds"):
        settings_from_args(args)
