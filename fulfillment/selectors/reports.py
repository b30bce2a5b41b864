"""Read side of the daily reports."""

from __future__ import annotations

from datetime import date

from django.db.models import QuerySet

from fulfillment.errors import NotFound
from fulfillment.models import DailyReport


def daily_report_list(
    *, date_from: date | None = None, date_to: date | None = None
) -> QuerySet[DailyReport]:
    qs = DailyReport.objects.order_by("-date")
    if date_from is not None:
        qs = qs.filter(date__gte=date_from)
    if date_to is not None:
        qs = qs.filter(date__lte=date_to)
    return qs


def daily_report_get(*, day: date) -> DailyReport:
    report = DailyReport.objects.filter(date=day).first()
    if report is None:
        raise NotFound("daily report", day.isoformat())
    return report
