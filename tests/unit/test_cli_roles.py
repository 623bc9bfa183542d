"""`--role` and `--lease` as an operator gives them: flag, environment, defaults, refusals."""

from __future__ import annotations

import pytest

from homing.cli import build_parser, settings_from_args
from homing.config import Settings

PG = "postgresql://homing@db/homing"
SERVE = ["serve", "--token", "t", "--current-signing-key", "a", "--next-signing-key", "b"]


def settings(*args: str, env: dict[str, str] | None = None) -> Settings:
    environ = env or {}
    found: Settings = settings_from_args(build_parser(environ).parse_args([*SERVE, *args]))
    return found


def test_every_node_runs_everything_with_a_30_second_lease_by_default() -> None:
    s = settings()
    assert (s.role, s.lease_ms) == ("all", 30_000)


def test_the_role_comes_from_the_flag_or_the_environment_the_flag_winning() -> None:
    assert settings("--database", PG, "--role", "worker").role == "worker"
    assert settings("--database", PG, env={"HOMING_ROLE": "api"}).role == "api"
    assert settings("--database", PG, "--role", "all", env={"HOMING_ROLE": "api"}).role == "all"


def test_the_lease_is_given_in_seconds() -> None:
    assert settings("--lease", "2.5").lease_ms == 2_500
    assert settings(env={"HOMING_LEASE": "5"}).lease_ms == 5_000
    with pytest.raises(SystemExit, match="--lease must be between 1 and 3600 seconds"):
        settings("--lease", "0.5")


@pytest.mark.parametrize("role", ["api", "worker"])
def test_sqlite_refuses_every_role_but_all(role: str) -> None:
    with pytest.raises(SystemExit, match=f"role '{role}' needs PostgreSQL"):
        settings("--role", role)


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown role 'scheduler': use all, api or worker"):
        settings("--database", PG, "--role", "scheduler")
