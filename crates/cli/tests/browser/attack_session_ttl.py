"""Attack: an expired console session. The server runs with
HOOKWARDEN_CONSOLE_SESSION_TTL=10s: the cookie says so, and once the time is
up the console sends the browser to sign in — also when the old cookie is
put back by hand, and a POST with it and its CSRF token is refused."""

import os
import time

from harness import OPERATOR_KEY, browser, check, heading, path, sign_in, url

TTL = 10
check(os.environ.get("HOOKWARDEN_CONSOLE_SESSION_TTL") == f"{TTL}s", "run with HOOKWARDEN_CONSOLE_SESSION_TTL=10s")

with browser() as page:
    sign_in(page, OPERATOR_KEY)
    started = time.monotonic()
    check(path(page) == "/console", f"signing in led to {page.url}")
    kept = [c for c in page.context.cookies() if c["name"] == "hw_console"][0]
    lifetime = kept["expires"] - time.time()
    check(0 < lifetime <= TTL + 1, f"the console cookie lasts {lifetime:.0f} s, not {TTL} s")
    csrf = page.locator("input[name=_csrf]").first.get_attribute("value")
    page.goto(url("/console/integrations"))
    check(heading(page) == "Integrations", "the session did not work before it expired")

    time.sleep(max(0.0, started + TTL + 0.5 - time.monotonic()))
    page.goto(url("/console/integrations"))
    check(path(page) == "/console/sign-in", f"after {TTL} s the console still opens: {page.url}")

    # The browser dropped the cookie; the server refuses it too.
    kept["expires"] = time.time() + 600
    page.context.add_cookies([kept])
    page.goto(url("/console"))
    check(path(page) == "/console/sign-in", f"the expired session's cookie, put back, still opens {page.url}")
    page.context.add_cookies([kept])
    r = page.request.post(url("/console/sign-out"), form={"_csrf": csrf}, max_redirects=0)
    check(r.status == 403 and "session has ended" in r.text(), f"a POST with the expired session answered {r.status}")
