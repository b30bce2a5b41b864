# Built without blocking writes (the orders table may hold millions of rows): a non-atomic
# migration with CREATE INDEX CONCURRENTLY.
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("fulfillment", "0010_events_webhooks"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="order",
            index=models.Index(
                fields=["status", "-created_at", "-id"], name="order_status_created_idx"
            ),
        ),
    ]
