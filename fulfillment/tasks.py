"""Procrastinate tasks and periodic schedules. Tasks are thin: load ids, call one service."""

from __future__ import annotations

import procrastinate
from procrastinate.contrib.django import app


def on_app_ready(ready_app: procrastinate.App) -> None:
    """Hook named by PROCRASTINATE_ON_APP_READY (runs when Django's app registry is ready)."""


__all__ = ["app", "on_app_ready"]
