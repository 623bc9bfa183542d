"""The server tunes the garbage collector once started (`homing.server.settle_heap`)."""

from __future__ import annotations

import subprocess
import sys


def test_a_started_server_freezes_its_start_and_collects_in_larger_batches() -> None:
    # In a process of its own: a frozen heap would keep this test process's garbage.
    code = (
        "import gc; from homing.server import GC_THRESHOLDS, settle_heap; "
        "settle_heap(); "
        "assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold(); "
        "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count(); "
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
