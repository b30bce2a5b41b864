"""Schemas of the pipeline endpoints: stale-order check and daily reports."""

from __future__ import annotations

import datetime
from decimal import Decimal

from ninja import Schema


class StaleCheckOut(Schema):
    checked: int
    redeferred: list[str]
    failed: list[str]
    skipped_live_job: list[str]
    duration_ms: float


class DailyReportOut(Schema):
    date: datetime.date
    orders_created: int
    counts_by_status: dict[str, int]
    revenue: Decimal
    avg_seconds_to_processing: float | None
    avg_seconds_to_shipped: float | None
    avg_seconds_to_delivered: float | None
    generated_at: datetime.datetime
