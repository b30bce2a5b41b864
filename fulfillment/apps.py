import sys

from django.apps import AppConfig
from django.conf import settings


class FulfillmentConfig(AppConfig):
    name = "fulfillment"
    verbose_name = "Order fulfillment"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Import the configured database routers now (not on the first query), so that their
        # request_started receivers (config.db_router) are connected before the first request.
        from django.db import router

        _ = router.routers

        # The Procrastinate worker's own /metrics, for a worker on another host than the web.
        if settings.METRICS_WORKER_PORT and sys.argv[1:3] == ["procrastinate", "worker"]:
            from fulfillment import metrics

            metrics.serve_worker_metrics(settings.METRICS_WORKER_PORT)
