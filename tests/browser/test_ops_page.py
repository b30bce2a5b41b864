"""The operations page /ops/ in a real Chromium against a production-mode gunicorn: a staff member
sees the charts drawn with the data of a burst of orders, from this server's static files only;
an anonymous visitor is sent to the login page.

``OPS_SCREENSHOT=1`` also saves the page to docs/img/ops.png (the picture in the docs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connection
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from fulfillment.models import Order
from fulfillment.services.api_keys import api_key_create
from fulfillment.services.stages import order_transition
from tests.browser.conftest import ROOT, Browser
from tests.factories import make_product
from tests.pipeline_support import run_worker_until_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # real gunicorn and Chromium

WAIT_SECONDS = 60
BURST = 24
IN_FLIGHT = 5


def _wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT_SECONDS)


def _burst_of_orders(origin: str) -> None:
    """Orders taken through the API, run through the pipeline by a worker, one of them failed;
    one product left low on stock."""
    key = api_key_create(name="ops-browser", role="admin").raw_key
    products = [make_product(stock=400, threshold=5), make_product(stock=4, threshold=5)]
    _orders(origin, key, products[0].pk, BURST)
    last = Order.objects.order_by("-pk").first()
    assert last is not None
    order_transition(
        target=Order.Status.FAILED, actor="test", order_pk=last.pk, reason="payment declined"
    )
    # The server scheduled the first stages after its simulated delay: make them due now (the
    # worker below runs the later stages with the tests' zero delays).
    with connection.cursor() as cur:
        cur.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
    run_worker_until_idle()
    _orders(origin, key, products[0].pk, IN_FLIGHT)  # still pending: their stages are not due


def _orders(origin: str, key: str, product_id: int, count: int) -> None:
    for i in range(count):
        created = requests.post(
            origin + "/api/v1/orders/",
            json={
                "customer_name": f"Customer {i}",
                "customer_email": f"customer{i % 7}@example.com",
                "items": [{"product_id": product_id, "quantity": 1 + i % 3}],
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text


@pytest.mark.django_db(transaction=True)
def test_staff_member_sees_charts_drawn_from_a_burst_of_orders(browser: Browser, empty_queue: None):
    # given
    get_user_model().objects.create_user(
        "operator", "operator@example.com", "browser-pw-123", is_staff=True
    )
    _burst_of_orders(browser.origin)
    driver = browser.driver

    # when: the staff member logs in and follows the admin's link to the page
    browser.get("/admin/")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "id_username")))
    driver.find_element(By.ID, "id_username").send_keys("operator")
    driver.find_element(By.ID, "id_password").send_keys("browser-pw-123")
    driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#ops-link a")))
    driver.find_element(By.CSS_SELECTOR, "#ops-link a").click()
    _wait(driver).until(
        lambda d: int(d.find_element(By.ID, "ops").get_attribute("data-renders") or 0) >= 2
    )

    # then: both charts are drawn (canvases), with the burst in their data
    assert driver.find_elements(By.CSS_SELECTOR, "#chart-throughput canvas")
    assert driver.find_elements(By.CSS_SELECTOR, "#chart-in-flight canvas")
    totals = driver.execute_script(
        "var d = window.opsCharts.throughput.data;"
        "return d.slice(1).map(function (s) { return s.reduce(function (a, b) { return a + b; }, 0); });"
    )
    accepted, processing, shipped, delivered, _cancelled, failed = totals
    assert accepted == BURST + IN_FLIGHT and failed == 1
    assert processing == shipped == delivered == BURST - 1
    legend = driver.find_element(By.CSS_SELECTOR, "#chart-throughput .u-legend").text
    assert "accepted" in legend and "delivered" in legend
    failures = driver.find_elements(By.CSS_SELECTOR, "#table-failures a")
    assert [a.text for a in failures] and "payment declined" in driver.find_element(
        By.ID, "table-failures"
    ).text
    assert (
        failures[0].get_attribute("href").startswith(browser.origin + "/admin/fulfillment/order/")
    )
    assert "pending\n" + str(IN_FLIGHT) in driver.find_element(By.ID, "in-flight").text
    assert "TEST-" in driver.find_element(By.ID, "table-low_stock").text
    assert driver.find_element(By.ID, "ops-error").get_attribute("hidden") is not None
    urls = browser.assert_clean()
    assert browser.origin + "/static/ops/vendor/uplot-1.6.32/uPlot.iife.min.js" in urls
    assert browser.origin + "/ops/data/" in urls

    if os.environ.get("OPS_SCREENSHOT") == "1":
        driver.set_window_size(1280, 1400)
        driver.save_screenshot(str(ROOT / "docs" / "img" / "ops.png"))


def test_anonymous_visitor_is_sent_to_the_login_page(browser: Browser, tmp_path: Path):
    browser.get("/ops/")

    _wait(browser.driver).until(ec.presence_of_element_located((By.ID, "id_username")))
    assert browser.driver.current_url.startswith(browser.origin + "/admin/login/?next=/ops/")
    browser.assert_clean()
