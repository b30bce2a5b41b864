"""An index on Procrastinate's job table for reads by due time (``fulfillment.queue``).

``procrastinate_jobs`` belongs to Procrastinate (its own migrations create it); this index is
the application's, named with the ``fulfillment_`` prefix so it never clashes with one of
Procrastinate's. It makes the queue lag (the oldest due job's age) a single-row index read.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("fulfillment", "0011_order_status_created_idx"),
        ("procrastinate", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS fulfillment_procrastinate_todo_due_idx "
            "ON procrastinate_jobs (scheduled_at, id) WHERE status = 'todo'",
            "DROP INDEX IF EXISTS fulfillment_procrastinate_todo_due_idx",
        ),
    ]
