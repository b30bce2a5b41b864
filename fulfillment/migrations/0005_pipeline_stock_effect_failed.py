from django.db import migrations

# Raised by the order transition statement (fulfillment/services/transition.py) when the stock
# effect of a move (ship or release) could not be applied to every line of the order, so the
# statement, order row and every stock row it touched, is undone even when it runs as its own
# (autocommit) transaction. DETAIL carries JSON for the error.
STOCK_EFFECT_FAILED_FUNCTION = """
CREATE OR REPLACE FUNCTION fulfillment_stock_effect_failed(detail text) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'fulfillment:stock_effect_failed',
        DETAIL = detail;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("fulfillment", "0004_api_keys"),
    ]

    operations = [
        migrations.RunSQL(
            STOCK_EFFECT_FAILED_FUNCTION,
            "DROP FUNCTION IF EXISTS fulfillment_stock_effect_failed(text);",
        ),
    ]
