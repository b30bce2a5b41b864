from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from fulfillment.models import Order, StockLevel
from tests.factories import make_product

pytestmark = pytest.mark.django_db(transaction=True)


def test_load_test_creates_orders_concurrently_and_reports_a_clean_oversell_check():
    products = [make_product(stock=40) for _ in range(3)]
    out = StringIO()

    call_command("load_test", orders=60, threads=4, delay=0, seed=7, stdout=out)

    text = out.getvalue()
    accepted = Order.objects.count()
    assert f"accepted       {accepted}" in text
    rejected = 60 - accepted
    assert f"rejected       {rejected}" in text
    assert "throughput" in text and "p99" in text
    assert "oversell check OK" in text
    for p in products:
        level = StockLevel.objects.get(product=p)
        assert 0 <= level.reserved <= level.on_hand == 40


def test_load_test_needs_products():
    with pytest.raises(CommandError, match="no active products"):
        call_command("load_test", orders=5, threads=2, stdout=StringIO())


def test_load_test_rejects_bad_arguments():
    make_product(stock=1)
    with pytest.raises(CommandError):
        call_command("load_test", orders=0, threads=2, stdout=StringIO())
