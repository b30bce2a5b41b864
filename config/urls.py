from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from config.api import api, error_response
from fulfillment.api import health
from fulfillment.api.metrics import metrics_view


@csrf_exempt  # a write to an unknown path is a JSON 404, not Django's HTML CSRF 403
def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Unknown /api/ paths (e.g. a malformed order id) answer in the API's error shape."""
    return error_response(request, 404, "not_found", f"no API endpoint at {request.path}")


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask every origin for /favicon.ico (the admin's pages name no icon): answer with
    the icon the API docs use instead of a 404 in the browser console."""
    return HttpResponseRedirect(static("ninja/favicon.png"))


urlpatterns = [
    path("admin/", admin.site.urls),
    path("ops/", include("fulfillment.ops.urls")),
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", api_not_found),
    path("swagger/", RedirectView.as_view(url="/api/v1/docs", permanent=False)),
    path("docs/", RedirectView.as_view(url="/api/v1/docs", permanent=False)),
    path("favicon.ico", favicon),
    path("health/", health.health_report, name="health"),
    path("health/live/", health.live, name="health-live"),
    path("health/ready/", health.ready, name="health-ready"),
    path("metrics", metrics_view, name="metrics"),
    path("", RedirectView.as_view(url="/api/v1/docs", permanent=False)),
]

# JSON error shape under /api/ for URLs that match no route (e.g. a path parameter of the wrong
# type) and for errors outside the API's own handlers; never a stack trace.
handler404 = "fulfillment.hardening.not_found"
handler500 = "fulfillment.hardening.server_error"
