"""The pages people open in a browser, rendered by a real Chromium from a production-mode server:
the API docs and the admin (login, orders, Procrastinate jobs), with no console error and no
request to another host."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from fulfillment.services.api_keys import api_key_create
from tests.browser.conftest import Browser
from tests.factories import make_product

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # real gunicorn and Chromium

WAIT_SECONDS = 60  # two shared cores: a cold Chromium and Swagger UI's first render are slow


def _wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT_SECONDS)


def test_docs_page_renders_every_operation_from_local_assets(browser: Browser, tmp_path: Path):
    driver = browser.driver

    # when
    browser.get("/api/v1/docs")
    _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    driver.save_screenshot(str(tmp_path / "docs.png"))

    # then: Swagger UI drew the operations of the schema, the orders ones included
    paths = {
        el.get_attribute("data-path")
        for el in driver.find_elements(By.CSS_SELECTOR, ".opblock .opblock-summary-path")
    }
    schema = requests.get(browser.origin + "/api/v1/openapi.json", timeout=10).json()
    assert paths == set(schema["paths"]), paths
    assert "/api/v1/orders/" in paths
    title = driver.find_element(By.CSS_SELECTOR, ".info .title").text
    assert title.startswith(schema["info"]["title"])
    # ... and its code came from this server
    urls = browser.assert_clean()
    assert browser.origin + "/static/ninja/swagger-ui-bundle.js" in urls
    assert browser.origin + "/api/v1/openapi.json" in urls


@pytest.mark.django_db(transaction=True)
def test_admin_login_orders_and_job_pages_render(browser: Browser, empty_queue: None):
    # given: a superuser, and an order taken through the API (it queues its first stage job)
    get_user_model().objects.create_superuser("staff", "staff@example.com", "browser-pw-123")
    key = api_key_create(name="browser-test", role="admin").raw_key
    product = make_product(stock=10)
    created = requests.post(
        browser.origin + "/api/v1/orders/",
        json={
            "customer_name": "Grace Browser",
            "customer_email": "grace@example.com",
            "items": [{"product_id": product.pk, "quantity": 1}],
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    driver = browser.driver

    # when: the staff member logs in through the form
    browser.get("/admin/")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "id_username")))
    driver.find_element(By.ID, "id_username").send_keys("staff")
    driver.find_element(By.ID, "id_password").send_keys("browser-pw-123")
    driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()

    # then: the admin index, the order changelist and the Procrastinate job pages render
    _wait(driver).until(ec.presence_of_element_located((By.ID, "user-tools")))
    assert "staff" in driver.find_element(By.ID, "user-tools").text.lower()
    assert driver.find_element(By.CSS_SELECTOR, "#content h1").text == "Site administration"

    browser.get("/admin/fulfillment/order/")
    rows = driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and "Grace Browser" in rows[0].text
    assert driver.find_element(By.CSS_SELECTOR, "a.events-admin").text == "EVENTS"

    browser.get("/admin/procrastinate/procrastinatejob/")
    jobs = driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(jobs) == 1, driver.page_source
    jobs[0].find_element(By.CSS_SELECTOR, "th a").click()
    _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".field-queue_name")))
    assert "todo" in driver.find_element(By.CSS_SELECTOR, ".field-pretty_status").text.lower()

    browser.assert_clean()
