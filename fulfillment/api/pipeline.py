"""Pipeline endpoints: run the stale-order check on demand, read the daily reports.

Two routers: ``stale_router`` is mounted at ``/orders/`` beside the orders router (its literal
path ``check_stale/`` never matches the orders router's ``{uuid:order_id}`` paths and is
registered first), ``reports_router`` at ``/reports/``.
"""

import time

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.pagination import paginate
from pydantic import Field

from fulfillment.api.common import Pagination, actor_of
from fulfillment.models import DailyReport
from fulfillment.schemas import ErrorOut
from fulfillment.schemas.common import QueryDate
from fulfillment.schemas.pipeline import DailyReportOut, StaleCheckOut
from fulfillment.selectors import reports as report_selectors
from fulfillment.services.stale import stale_orders_heal

stale_router = Router(tags=["orders"])
reports_router = Router(tags=["reports"])


class StaleCheckParams(Schema):
    limit: int = Field(1000, ge=1, le=10000, description="most stale orders handled in one run")


@stale_router.post("/check_stale/", response={200: StaleCheckOut, 422: ErrorOut})
def check_stale(request: HttpRequest, params: Query[StaleCheckParams]) -> StaleCheckOut:
    """Run the stale-order check now (the same service the every-minute job runs)."""
    started = time.perf_counter()
    result = stale_orders_heal(actor=actor_of(request), limit=params.limit)
    return StaleCheckOut(
        checked=result.checked,
        redeferred=result.redeferred,
        failed=result.failed,
        skipped_live_job=result.skipped_live_job,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


class ReportFilters(Schema):
    date_from: QueryDate | None = None
    date_to: QueryDate | None = None


@reports_router.get("/daily/", response={200: list[DailyReportOut], 422: ErrorOut})
@paginate(Pagination)
def list_daily_reports(request: HttpRequest, filters: Query[ReportFilters]):  # type: ignore[no-untyped-def]
    return report_selectors.daily_report_list(date_from=filters.date_from, date_to=filters.date_to)


@reports_router.get("/daily/{day}/", response={200: DailyReportOut, 404: ErrorOut, 422: ErrorOut})
def get_daily_report(request: HttpRequest, day: QueryDate) -> DailyReport:
    return report_selectors.daily_report_get(day=day)
