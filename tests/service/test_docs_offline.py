"""/docs (Swagger UI) and /redoc work with no internet: every asset comes from the service.

Before, both pages loaded their scripts and styles from a CDN and were blank offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.service.cluster import Cluster

PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
               ".json": "application/json"}


class _References(HTMLParser):
    """Every URL a page makes the browser load: src, href, spec-url, and `url: '...'` in
    inline scripts (Swagger UI's spec URL)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._script = tag == "script"
        self.urls += [value for name, value in attrs
                      if name in ("src", "href", "spec-url") and value]

    def handle_data(self, data: str) -> None:
        if self._script:
            self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The API alone: the docs need no worker."""
    c = Cluster(tmp_path_factory.mktemp("docs"))
    try:
        c.start_api()
        yield c
    finally:
        c.close()


def _references(api: Cluster, page: str) -> list[str]:
    r = api.http.get(page)
    assert r.status_code == 200, (page, r.status_code)
    assert r.headers["content-type"].startswith("text/html"), r.headers
    parser = _References()
    parser.feed(r.text)
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
def test_page_names_no_other_host(api: Cluster, page: str) -> None:
    text = api.http.get(page).text
    origin = str(api.http.base_url).rstrip("/")
    foreign = [u for u in re.findall(r"""(?:https?:)?//[^\s"'<>)]+""", text)
               if not u.startswith(origin)]
    assert not foreign, (page, foreign)
    for url in _references(api, page):
        assert urlsplit(url).netloc == "" and url.startswith("/"), (page, url)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_a_page_loads_is_served(api: Cluster, page: str) -> None:
    urls = _references(api, page)
    assert any(u.endswith(".js") for u in urls), urls  # the UI itself, not an empty page
    assert "/openapi.json" in urls, urls
    for url in urls:
        r = api.http.get(urljoin(page, url))
        assert r.status_code == 200, (url, r.status_code)
        suffix = url[url.rfind("."):]
        assert r.headers["content-type"].startswith(ASSET_TYPES[suffix]), (url, r.headers)
        assert len(r.content) > 1000, (url, len(r.content))


def test_swagger_ui_asks_no_online_validator(api: Cluster) -> None:
    """Swagger UI's default validator badge is an image from validator.swagger.io."""
    assert '"validatorUrl": null' in api.http.get("/docs").text


def test_stylesheet_pulls_nothing_from_elsewhere(api: Cluster) -> None:
    css = api.http.get("/docs/assets/swagger-ui.css").text
    refs = re.findall(r"""url\(\s*['"]?([^'")]+)""", css) + re.findall(r"@import\s+([^;]+)", css)
    assert refs, "the stylesheet is Swagger UI's"
    assert all(ref.startswith("data:") for ref in refs), [r[:60] for r in refs]
