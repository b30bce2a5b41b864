from django.apps import AppConfig


class FulfillmentConfig(AppConfig):
    name = "fulfillment"
    verbose_name = "Order fulfillment"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Import the configured database routers now (not on the first query), so that their
        # request_started receivers (config.db_router) are connected before the first request.
        from django.db import router

        _ = router.routers
