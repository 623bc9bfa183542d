"""Homing: a self-hosted HTTP message queue and task scheduler, wire-compatible with QStash."""

from __future__ import annotations

__version__ = "0.1.0"
