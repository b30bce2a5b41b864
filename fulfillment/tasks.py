"""Procrastinate tasks and periodic schedules. Tasks are thin: load ids, call one service."""

from __future__ import annotations

import procrastinate
from procrastinate.contrib.django import app


@app.task(name="fulfillment.advance_order", queue="pipeline", pass_context=True)
def advance_order(context: procrastinate.JobContext, order_pk: int, expected_status: str) -> None:
    """Run the next stage of one order (filled in by the pipeline: see services/pipeline.py)."""


def on_app_ready(ready_app: procrastinate.App) -> None:
    """Hook named by PROCRASTINATE_ON_APP_READY (runs when Django's app registry is ready)."""


__all__ = ["advance_order", "app", "on_app_ready"]
