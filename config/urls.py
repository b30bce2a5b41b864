from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from config.api import api
from fulfillment.api import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("swagger/", RedirectView.as_view(url="/api/v1/docs", permanent=False)),
    path("docs/", RedirectView.as_view(url="/api/v1/docs", permanent=False)),
    path("health/", health.health_report, name="health"),
    path("health/live/", health.live, name="health-live"),
    path("health/ready/", health.ready, name="health-ready"),
    path("", RedirectView.as_view(url="/api/v1/docs", permanent=False)),
]
