"""Running the `homing` command line the way an operator would, from a test."""

from __future__ import annotations

import subprocess
import sys


def homing(*args: str) -> str:
    """`homing ARGS...` in a child process; its standard output (raises if it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "homing", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def run_homing(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`homing ARGS...` in a child process, whatever its exit code (for tests of refusals)."""
    return subprocess.run(
        [sys.executable, "-m", "homing", *args], capture_output=True, text=True, timeout=timeout
    )
