from __future__ import annotations

from homing.cli import main

main()
