"""`homing dev` with a short retention, for the soak test (tests/reliability/test_soak.py).

    python tests/reliability/soak_server.py RETENTION_S dev --port ... --data-dir ...

A long run at a steady rate can only show a store that stays the same size once delivered
messages, their logs and DLQ entries are purged as fast as new ones arrive; with the default
retention (7 days) the store grows for a week. Everything else is the `homing` command as is.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from homing.cli import build_parser, settings_from_args
from homing.logs import configure_logging
from homing.server import serve


def main() -> None:
    retention_ms = int(float(sys.argv[1]) * 1000)
    args = build_parser(os.environ).parse_args(sys.argv[2:])
    settings = replace(
        settings_from_args(args), retention_ms=retention_ms, dlq_retention_ms=retention_ms
    )
    configure_logging(args.log_level or "warning", settings.log_format)
    serve(settings, log_level=(args.log_level or "warning").lower())


if __name__ == "__main__":
    main()
