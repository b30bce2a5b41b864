"""The API docs page works offline: Swagger UI comes from this server's static files, never a
CDN, and every asset the page references is served."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Attribute values that load something: src/href on any tag, plus url(...) in inline styles.
_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""", re.I)


def _references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCE.findall(html)]


def test_docs_page_references_no_other_host(client):
    page = client.get("/api/v1/docs")

    assert page.status_code == 200
    html = page.content.decode()
    refs = _references(html)
    assert refs, html
    external = [r for r in refs if urlsplit(r).netloc or r.startswith("//")]
    assert external == [], external
    assert "cdn" not in html.lower()


def test_every_asset_of_the_docs_page_is_served(client):
    refs = _references(client.get("/api/v1/docs").content.decode())

    scripts = [r for r in refs if r.endswith(".js")]
    assert any(r.endswith("swagger-ui-bundle.js") for r in scripts), refs
    for ref in refs:
        response = client.get(ref)
        assert response.status_code == 200, ref
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body, ref
