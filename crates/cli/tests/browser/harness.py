"""What every browser scenario shares: the server under test's addresses
from the environment, Debian's chromium driven by Playwright, pages that
record console errors, page errors and failed resources, screenshots, the
console sign-in, and `check`.

A scenario is a plain script beside this file, run by `crates/cli/tests/browser.rs`
as `python3 <name>.py` with HW_BASE, HW_OPS, HW_OPERATOR_KEY and HW_SHOTS
set. It fails by raising (a failed `check`, a Playwright timeout): the
script then exits non-zero and the Rust test shows its output.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

# Debian's package, never a browser Playwright downloads (scripts/test installs it).
CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Local pages answer at once; a missing element should fail fast, not in 30 s.
TIMEOUT_MS = 10_000


def _env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: run scenarios through cargo test -p hookwarden --test browser")
    return value


BASE = _env("HW_BASE").rstrip("/")
OPS = os.environ.get("HW_OPS", "").rstrip("/")
OPERATOR_KEY = _env("HW_OPERATOR_KEY")
SHOTS = _env("HW_SHOTS")

# What went wrong in any page of this run, as "where: what".
_errors = []


class CheckFailed(AssertionError):
    """A scenario's expectation that did not hold."""


def check(cond, msg):
    """Fails the scenario with `msg` unless `cond` holds."""
    if not cond:
        raise CheckFailed(msg)


def url(path):
    """The public URL of `path` on the server under test."""
    return BASE + path


def path(page):
    """The path of the page's address (no host, no query)."""
    return urlparse(page.url).path


def _watch(page):
    def on_console(msg):
        # A resource's error status is logged without saying which request
        # (the document itself, or the favicon the browser asks for on its
        # own); failed resources are recorded from the responses instead.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            _errors.append(f"console error on {page.url}: {msg.text}")

    def on_response(resp):
        kind = resp.request.resource_type
        # A page's own status and its scripts' fetches are the scenario's to check.
        if resp.status >= 400 and kind not in ("document", "fetch", "xhr"):
            _errors.append(f"{kind} {resp.url} answered {resp.status} on {page.url}")

    def on_request_failed(req):
        failure = req.failure or ""
        # A navigation cancels the old page's pending requests: not a fault.
        if "ERR_ABORTED" not in failure and urlparse(req.url).path != "/favicon.ico":
            _errors.append(f"{req.resource_type} {req.url} failed ({failure}) on {page.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda err: _errors.append(f"page error on {page.url}: {err}"))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)


def new_page(b, viewport=DESKTOP):
    """A page in its own context (own cookies: a separate user) of browser `b`,
    whose errors are recorded."""
    context = b.new_context(viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    _watch(page)
    return page


@contextlib.contextmanager
def browser():
    """Headless chromium and a first page (`new_page`); more pages come from
    `new_page(page.context.browser)`. On a clean exit, any recorded error
    fails the scenario; on a failure, the page's address and text are printed."""
    with sync_playwright() as p:
        # Chromium's sandbox refuses to run as root; the tests run as root in CI.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = new_page(b)
        try:
            yield page
            assert_no_errors()
        except BaseException:
            _describe(page)
            raise
        finally:
            b.close()


def _describe(page):
    try:
        text = page.inner_text("body", timeout=1_000)
    except Exception:  # the page may be gone; the failure itself matters more
        text = "(no body)"
    print(f"page at failure: {page.url}\n{text[:2000]}", file=sys.stderr)
    for e in _errors:
        print(f"recorded: {e}", file=sys.stderr)


def assert_no_errors():
    """Fails if any page logged a console error (a JS error, a CSP violation),
    threw, or had a resource fail."""
    check(not _errors, "errors in the browser:\n" + "\n".join(_errors))


def take_errors():
    """The errors recorded so far, forgotten: for a scenario that expects some."""
    found = list(_errors)
    _errors.clear()
    return found


def shot(page, name):
    """Saves the page at desktop size as HW_SHOTS/<name>.png."""
    _shot(page, name, DESKTOP)


def shot_phone(page, name):
    """Saves the page at phone size as HW_SHOTS/<name>-phone.png."""
    _shot(page, f"{name}-phone", PHONE)


def _shot(page, name, size):
    before = page.viewport_size
    page.set_viewport_size(size)
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))
    if before:
        page.set_viewport_size(before)


def sign_in(page, key):
    """Signs in to the operator console with `key` through its form; the page
    is then wherever the server sent it (the console, or the form again)."""
    response = page.goto(url("/console/sign-in"))
    check(response is not None and response.ok, f"/console/sign-in answered {response and response.status}")
    page.get_by_label("Operator key").fill(key)
    _submit(page, "Sign in")


def sign_out(page):
    """Signs out through the console's "Sign out" button."""
    _submit(page, "Sign out")


def _submit(page, button):
    # The form posts and the server answers with a page or a redirect: wait
    # for that new page to load, not just for the click.
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()


def heading(page):
    """The text of the page's `<h1>`."""
    return page.locator("h1").first.inner_text().strip()


def follow(page, locator):
    """Clicks `locator` (a link or a submit button) and waits for the page it leads to."""
    with page.expect_navigation():
        locator.click()


def reload_until(page, cond, what, seconds=10, every=0.5):
    """Reloads the page every `every` seconds until `cond()` holds (work done
    in the background, such as a delivery, shows up on a later load); fails
    naming `what` after `seconds`. Each portal page load costs the account
    a few requests of its API rate limit (60 a minute by default): poll
    gently there."""
    deadline = time.monotonic() + seconds
    while not cond():
        check(time.monotonic() < deadline, f"no {what} after {seconds} s of reloading {page.url}")
        time.sleep(every)
        page.reload()


def api(method, path_, body=None, headers=None):
    """A plain HTTP request to the server under test (no browser): answers
    (status, parsed JSON or text). `body` is sent as JSON unless it is bytes."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url(path_), data=data, method=method)
    if body is not None and not isinstance(body, bytes):
        req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def tenant(account_id, method, path_, body=None):
    """A tenant API request for `account_id`, with a token signed (HS256)
    under the server's development secret, HW_JWT_SECRET."""
    def part(obj):
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": account_id, "account_id": account_id,
              "scope": "webhooks:read webhooks:write", "exp": int(time.time()) + 600}
    signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(claims)
    mac = hmac.new(_env("HW_JWT_SECRET").encode(), signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return api(method, path_, body, {"authorization": f"Bearer {token}"})


def operator(method, path_, body=None):
    """An operator API request with HW_OPERATOR_KEY."""
    return api(method, path_, body, {"x-internal-api-key": OPERATOR_KEY})


def portal_link(account_id, ttl=None):
    """A fresh single-use portal link for `account_id`, minted with the operator key."""
    body = {"accountId": account_id}
    if ttl is not None:
        body["ttl"] = ttl
    status, answer = operator("POST", "/api/v1/portal-sessions", body)
    check(status == 201, f"minting a portal link answered {status}: {answer}")
    check(answer["url"].startswith(BASE + "/portal/enter?token="), f"the portal link {answer['url']} is not on {BASE}")
    return answer["url"]


PLATFORM = "http://platform.test"


def enter_portal(page, link, from_platform=False):
    """Opens a portal link in `page` and waits for the portal's first page.
    Followed from the platform's own page (`from_platform`: a Referer on the
    origin the scenario lists in HOOKWARDEN_PORTAL_FRAME_ANCESTORS), the
    link's page opens the portal by itself; otherwise a person presses its
    button, as this does."""
    if from_platform:
        page.goto(link, referer=PLATFORM + "/account/webhooks")
    else:
        page.goto(link)
        check(page.get_by_text("do not open it").count() == 1, "the link's page does not warn before opening")
        follow(page, page.get_by_role("button", name="Open the webhook settings"))
    page.wait_for_url(url("/portal"))


def send_stripe(name, secret, raw, extra_headers=None):
    """Sends `raw` (text) to integration `name`, signed as Stripe documents it:
    `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    Answers the status."""
    t = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{t}.{raw}".encode(), hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "stripe-signature": f"t={t},v1={mac}"}
    headers.update(extra_headers or {})
    status, _ = api("POST", f"/api/v1/webhooks/{name}", raw.encode(), headers)
    return status
