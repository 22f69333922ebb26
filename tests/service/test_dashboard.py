"""The web dashboard (/dashboard) in a real headless Chromium against a real Warden.

A tenant signs in with its key (the form posts it; the browser keeps only an HttpOnly,
SameSite=Strict session cookie), sees a job it submitted through the REST API appear with
its usage and quota use, cannot see another tenant's jobs or pages, is refused a form
without its CSRF token, and is signed out at once when its key is revoked. An admin key
sees every tenant. Bad form data gets an HTML page with a clear message, never a trace.

Chromium is Debian's (``apt-get install chromium``, /usr/bin/chromium): Playwright cannot
download its own browsers here. Every assertion reads the page's state after a navigation
has completed: nothing depends on timing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Response as PageResponse

from tests import wat_modules as W
from tests.service.cluster import Cluster

CHROMIUM = Path("/usr/bin/chromium")
SESSION_COOKIE = "warden_session"
EIGHT_HOURS = 8 * 3600


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium; "
                    "scripts/install.sh --dev installs it): Playwright cannot download one here")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (its own cookies) per test."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


def key_of(client: httpx.Client) -> str:
    """The API key a cluster client sends."""
    return client.headers["Authorization"].removeprefix("Bearer ")


def key_id_of(key: str) -> str:
    return "_".join(key.split("_")[:2])


def base(cluster: Cluster) -> str:
    return f"http://127.0.0.1:{cluster.port}/dashboard"


def submit_form(page: Page, form: str) -> PageResponse:
    """Submit the form matching the CSS selector ``form`` and wait for the page it leads to."""
    with page.expect_navigation() as navigation:
        page.click(f"{form} button[type=submit]")
    response = navigation.value
    assert response is not None
    return response


def sign_in(page: Page, cluster: Cluster, key: str) -> PageResponse:
    opened = page.goto(f"{base(cluster)}/login")
    assert opened is not None and opened.status == 200
    page.fill("#key", key)
    return submit_form(page, "form[action='/dashboard/login']")


def figures(page: Page) -> dict[str, str]:
    """The page's machine-readable figures (``data-figure`` → ``data-value``)."""
    found: dict[str, str] = page.eval_on_selector_all(
        "[data-figure][data-value]",
        "els => Object.fromEntries(els.map(e => [e.dataset.figure, e.dataset.value]))")
    return found


def quota_use(page: Page) -> dict[str, float]:
    used: dict[str, str] = page.eval_on_selector_all(
        "tr[data-quota]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.quota, r.dataset.used]))")
    return {name: float(value) for name, value in used.items()}


def job_rows(page: Page) -> dict[str, str]:
    """Job id → state, as the recent-jobs table lists them."""
    rows: dict[str, str] = page.eval_on_selector_all(
        "tr[data-job]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.job, r.dataset.state]))")
    return rows


def run_job(client: httpx.Client) -> dict[str, object]:
    r = client.post("/v1/jobs", params={"wait": 30}, json={"wat": W.HELLO})
    assert r.status_code == 200, r.text
    record: dict[str, object] = r.json()
    assert record["state"] == "finished", record
    return record


def no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text


# -- in the browser --------------------------------------------------------------------------
def test_a_tenant_signs_in_and_sees_its_jobs_usage_and_quotas(
    cluster: Cluster, context: BrowserContext, tmp_path: Path
) -> None:
    tenant, client = cluster.new_tenant("dash")
    key = key_of(client)
    page = context.new_page()

    first = page.goto(base(cluster))  # not signed in: sent to the sign-in page
    assert first is not None and first.status == 200
    assert page.url == f"{base(cluster)}/login"

    refused = sign_in(page, cluster, f"{key_id_of(key)}_{'A' * 43}")  # right id, wrong secret
    assert refused.status == 401
    assert "not valid" in page.inner_text("#login-error")
    refused = sign_in(page, cluster, "not-a-key")
    assert refused.status == 401
    assert "not a Warden API key" in page.inner_text("#login-error")
    no_trace(page.content())
    assert not [c for c in context.cookies() if c["name"] == SESSION_COOKIE]

    signed_in = sign_in(page, cluster, key)
    assert signed_in.status == 200
    assert page.url == base(cluster)  # the key went in a POST body, never in a URL
    assert page.inner_text("#tenant-id") == tenant
    assert page.inner_text("#signed-in-key") == key_id_of(key)
    (cookie,) = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert cookie["secure"] is False  # plain http here; https requests get Secure
    assert key not in cookie["value"] and all(key not in c["value"] for c in context.cookies())
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    assert page.is_visible("#no-jobs")
    before_figures, before_quotas = figures(page), quota_use(page)
    assert before_figures["jobs-total"] == "0" and before_figures["fuel-total"] == "0"
    assert before_quotas, "the quota table lists the tenant's quotas"

    record = run_job(client)
    reloaded = page.reload()
    assert reloaded is not None and reloaded.status == 200
    assert job_rows(page) == {record["id"]: "finished"}
    after_figures, after_quotas = figures(page), quota_use(page)
    fuel_used = record["result"]["fuel_used"]  # type: ignore[index]
    assert fuel_used > 0
    assert after_figures["jobs-total"] == "1"
    assert int(after_figures["fuel-total"]) == fuel_used
    assert any(after_quotas[q] > before_quotas[q] for q in before_quotas), (
        before_quotas, after_quotas)
    jobs_chart = page.eval_on_selector_all("#chart-jobs g.bar",
                                           "bars => bars.map(b => Number(b.dataset.value))")
    assert len(jobs_chart) == 14 and sum(jobs_chart) == 1
    assert page.locator("#chart-fuel g.bar").count() == 14

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.is_file() and shot.stat().st_size > 0

    for admin_page in ("/tenants", f"/tenants/{tenant}"):  # not an admin key
        r = page.goto(base(cluster) + admin_page)
        assert r is not None and r.status == 403
        assert "not an admin key" in page.inner_text("#error-detail")
    assert page.locator("a[href='/dashboard/tenants']").count() == 0

    page.goto(base(cluster))
    signed_out = submit_form(page, "form.logout")
    assert signed_out.status == 200 and page.url == f"{base(cluster)}/login"
    assert not [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
    page.goto(base(cluster))
    assert page.url == f"{base(cluster)}/login"


def test_forms_without_their_csrf_token_are_refused(
    cluster: Cluster, browser: Browser, context: BrowserContext
) -> None:
    _, client = cluster.new_tenant("csrf")
    page = context.new_page()
    sign_in(page, cluster, key_of(client))
    assert page.url == base(cluster)

    page.eval_on_selector("form.logout input[name=csrf]", "e => e.remove()")
    refused = submit_form(page, "form.logout")
    assert refused.status == 403
    assert "security token" in page.inner_text("#error-detail")
    page.goto(base(cluster))  # still signed in: the forged sign-out did nothing
    assert page.url == base(cluster)
    forged = context.request.post(f"{base(cluster)}/logout", form={"csrf": "x" * 43},
                                  max_redirects=0)
    assert forged.status == 403
    page.goto(base(cluster))
    assert page.url == base(cluster)

    other = browser.new_context()
    try:
        login = other.new_page()
        login.goto(f"{base(cluster)}/login")
        login.fill("#key", key_of(client))
        login.eval_on_selector("input[name=csrf]", "e => e.value = 'forged'")
        refused = submit_form(login, "form[action='/dashboard/login']")
        assert refused.status == 403
        assert "expired" in login.inner_text("#login-error")
        login.fill("#key", key_of(client))  # the fresh form it was given works
        assert submit_form(login, "form[action='/dashboard/login']").status == 200
        assert login.url == base(cluster)
    finally:
        other.close()


def test_a_tenant_cannot_see_another_tenants_jobs(
    cluster: Cluster, context: BrowserContext
) -> None:
    alice, alice_client = cluster.new_tenant("alice")
    _, bob_client = cluster.new_tenant("bob")
    alice_job = run_job(alice_client)["id"]
    bob_job = run_job(bob_client)["id"]
    assert isinstance(alice_job, str)

    page = context.new_page()
    sign_in(page, cluster, key_of(bob_client))
    assert job_rows(page) == {bob_job: "finished"}
    assert alice_job not in page.content()
    r = page.goto(f"{base(cluster)}/tenants/{alice}")
    assert r is not None and r.status == 403
    assert alice_job not in page.content()
    r = page.goto(f"{base(cluster)}/tenants")
    assert r is not None and r.status == 403
    assert alice not in page.content()


def test_an_admin_sees_every_tenant(cluster: Cluster, context: BrowserContext) -> None:
    tenant, client = cluster.new_tenant("seen")
    job = run_job(client)["id"]
    page = context.new_page()
    sign_in(page, cluster, cluster.admin_key)
    assert page.url == base(cluster)

    page.click("a[href='/dashboard/tenants']")
    page.wait_for_url(f"{base(cluster)}/tenants")
    listed = page.eval_on_selector_all("tr[data-tenant]", "rows => rows.map(r => r.dataset.tenant)")
    assert tenant in listed and "default" in listed
    jobs_today = page.get_attribute(f"tr[data-tenant='{tenant}'] [data-figure=jobs]",
                                    "data-value")
    assert jobs_today in ("1", "0")  # 0 only if the day (UTC) changed since the job ended

    page.click(f"a[href='/dashboard/tenants/{tenant}']")
    page.wait_for_url(f"{base(cluster)}/tenants/{tenant}")
    assert page.inner_text("#tenant-id") == tenant
    assert job_rows(page) == {job: "finished"}
    r = page.goto(f"{base(cluster)}/tenants/no-such-tenant")
    assert r is not None and r.status == 404
    r = page.goto(f"{base(cluster)}/tenants/Not%20An%20Id")
    assert r is not None and r.status == 404


def test_a_revoked_key_or_disabled_tenant_is_signed_out_at_once(
    cluster: Cluster, context: BrowserContext
) -> None:
    _, client = cluster.new_tenant("revoke")
    page = context.new_page()
    sign_in(page, cluster, key_of(client))
    assert page.url == base(cluster)
    revoked = cluster.http.delete(f"/v1/admin/keys/{key_id_of(key_of(client))}")
    assert revoked.status_code == 200, revoked.text
    page.goto(base(cluster))
    assert page.url == f"{base(cluster)}/login"
    assert sign_in(page, cluster, key_of(client)).status == 401
    assert "revoked" in page.inner_text("#login-error")

    tenant, client = cluster.new_tenant("disable")
    sign_in(page, cluster, key_of(client))
    assert page.url == base(cluster)
    r = cluster.http.patch(f"/v1/admin/tenants/{tenant}", json={"disabled": True})
    assert r.status_code == 200, r.text
    page.goto(base(cluster))
    assert page.url == f"{base(cluster)}/login"
    assert sign_in(page, cluster, key_of(client)).status == 403
    assert "disabled" in page.inner_text("#login-error")


# -- over plain HTTP (no browser needed) ------------------------------------------------------
def _login_form(http: httpx.Client) -> tuple[str, str]:
    """A sign-in form's CSRF token and the nonce cookie it is bound to."""
    r = http.get("/dashboard/login")
    assert r.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert match is not None, r.text
    return match.group(1), r.cookies["warden_login"]


def test_bad_form_data_gets_a_page_not_a_trace(cluster: Cluster) -> None:
    http = cluster.http_as(None)
    token, nonce = _login_form(http)
    cookies = {"Cookie": f"warden_login={nonce}"}

    def post(headers: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
        r = http.post("/dashboard/login", headers={**cookies, **(headers or {})},
                      **kwargs)  # type: ignore[arg-type]
        assert r.headers["content-type"].startswith("text/html"), r.headers
        no_trace(r.text)
        return r

    assert post(json={"key": "x", "csrf": token}).status_code == 400  # not a form
    garbage = post(content=b"\xff\xfe=\x00&&==%zz",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert garbage.status_code == 403  # read as a form with no valid CSRF token
    unparsable = post(content=b"--b\r\nx", headers={"Content-Type": "multipart/form-data"})
    assert unparsable.status_code == 400  # no boundary: not readable as a form
    r = post(data={"csrf": token}, files={"key": ("k.txt", b"wdn_x")})  # a file: refused
    assert r.status_code == 400
    r = post(data={"csrf": token})
    assert r.status_code == 400 and "Enter an API key" in r.text
    r = post(data={"csrf": token, "key": "x" * 10_000})
    assert r.status_code == 401 and "not a Warden API key" in r.text
    r = post(data={"csrf": token, "key": "wdn_\u00e9\U0001f600"})
    assert r.status_code == 401
    r = post(data={"key": cluster.admin_key})  # no CSRF token
    assert r.status_code == 403 and "expired" in r.text
    r = http.post("/dashboard/login", data={"key": cluster.admin_key, "csrf": token})
    assert r.status_code == 403  # the token without the cookie it is bound to
    assert http.post("/dashboard/logout", data={}).status_code == 303  # no session
    assert http.get("/dashboard").headers["location"] == "/dashboard/login"
    assert http.get("/dashboard/tenants").status_code == 303


def test_a_session_lives_in_redis_for_eight_hours_without_the_key(cluster: Cluster) -> None:
    _, client = cluster.new_tenant("session")
    key = key_of(client)
    http = cluster.http_as(None)
    token, nonce = _login_form(http)
    r = http.post("/dashboard/login", data={"key": key, "csrf": token},
                  headers={"Cookie": f"warden_login={nonce}"})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard", r.text
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace(
        "Strict", "strict") and "Path=/dashboard" in set_cookie
    session = r.cookies[SESSION_COOKIE]
    redis = cluster.client
    found = [k for k in redis.scan_iter("warden:session:*")
             if redis.hget(k, "key_id") == key_id_of(key).encode()]
    (stored,) = found
    assert session.encode() not in stored  # the id is a hash of the cookie's token
    assert EIGHT_HOURS - 60 < redis.ttl(stored) <= EIGHT_HOURS
    assert all(key.encode() not in v for v in redis.hgetall(stored).values())
    page = http.get("/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
    assert page.status_code == 200 and "script" not in page.headers[
        "content-security-policy"].replace("default-src 'none'", "")
    assert page.headers["cache-control"] == "no-store"


def test_the_dashboard_is_not_in_the_api_schema_and_serves_its_own_assets(
    cluster: Cluster,
) -> None:
    http = cluster.http_as(None)
    paths = http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]
    css = http.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    page = http.get("/dashboard/login").text
    assert "<script" not in page
    assert not re.findall(r'(?:href|src)="(?:https?:)?//', page)  # nothing from elsewhere
