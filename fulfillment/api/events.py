"""The event feed: every event in id order, never skipping one (viewer role)."""

from django.http import HttpRequest
from ninja import Query, Router

from fulfillment.schemas import ErrorOut
from fulfillment.schemas.events import FeedOut, FeedParams
from fulfillment.selectors import events as selectors

router = Router(tags=["events"])


@router.get("/", response={200: FeedOut, 422: ErrorOut})
def event_feed(request: HttpRequest, params: Query[FeedParams]) -> FeedOut:
    """Events after ``after`` in id order. Page with ``after=<next_after>``: no event is ever
    missed, as only events of finished transactions are handed out."""
    page = selectors.event_feed(after=params.after, type_=params.type, limit=params.limit)
    return FeedOut(items=page.items, next_after=page.next_after)  # type: ignore[arg-type]
