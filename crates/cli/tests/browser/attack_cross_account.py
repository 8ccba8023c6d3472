"""Attack: a portal session reaching another account. Account B adds an
endpoint and gets a delivery; account A's session opens B's endpoint page
(Not found, nothing of B's shown) and posts, with its own valid CSRF token,
to every route that acts on B's endpoint or delivery (delete, change,
disable, reveal and rotate the secret, test, retry): each answers Not found,
and afterwards B's endpoint, secret and delivery log are as they were. A
portal session is no console session either."""

import re
import time

from harness import (
    browser,
    check,
    enter_portal,
    follow,
    heading,
    new_page,
    path,
    portal_link,
    reload_until,
    url,
)
from receiver import Receiver


def token(page):
    return page.locator("input[name=_csrf]").first.get_attribute("value")


def add_endpoint(page, target):
    follow(page, page.get_by_role("link", name="Add endpoint"))
    page.get_by_label("Endpoint URL").fill(target)
    page.get_by_label("All event types").check()
    follow(page, page.get_by_role("button", name="Add endpoint"))
    endpoint = path(page)
    follow(page, page.get_by_role("button", name="Reveal signing secret"))
    secret = page.get_by_test_id("signing-secret").inner_text().strip()
    follow(page, page.get_by_role("link", name="Back to the endpoint"))
    return endpoint, secret


def not_found(text, what):
    check("Not found" in text and "not yours to see" in text, f"{what} did not answer Not found:\n{text[:300]}")


with Receiver() as rx, browser() as a:
    b = new_page(a.context.browser)
    enter_portal(a, portal_link("acct_alpha"))
    enter_portal(b, portal_link("acct_bravo"))

    # B's endpoint, with one delivered test event.
    b_endpoint, b_secret = add_endpoint(b, rx.base + "/bravo")
    b_id = b_endpoint.rsplit("/", 1)[1]
    follow(b, b.get_by_role("button", name="Send test event"))
    b_rows = b.get_by_test_id("delivery")
    reload_until(b, lambda: b_rows.count() == 1 and "succeeded" in b_rows.first.inner_text(), "B's test event delivered", every=1)
    retry_action = b_rows.first.locator("form").get_attribute("action")
    b_delivery = re.fullmatch(r"/portal/deliveries/([^/]+)/retry", retry_action).group(1)

    # A sees nothing of B's.
    check(b_id not in a.content(), "A's endpoint list shows B's endpoint")
    for where in (b_endpoint, b_endpoint + "?status=succeeded"):
        response = a.goto(url(where))
        check(response.status == 404, f"A opening {where} answered {response.status}")
        check(heading(a) == "Not found", f"A opening {where} sees {heading(a)!r}")
        check(rx.base not in a.content() and b_delivery not in a.content(), f"A opening {where} sees B's endpoint")

    # A acts on B's endpoint and delivery with its own session and token.
    a_token = token(a)
    posts = [
        (b_endpoint + "/delete", {}),
        (b_endpoint + "/secret", {}),
        (b_endpoint + "/rotate", {}),
        (b_endpoint + "/test", {}),
        (b_endpoint, {"toggle": "disable"}),
        (b_endpoint, {"url": "http://127.0.0.1:9/stolen", "eventTypes": "*"}),
        (f"/portal/deliveries/{b_delivery}/retry", {"endpoint": b_id}),
    ]
    for route, fields in posts:
        r = a.request.post(url(route), form={"_csrf": a_token, **fields}, max_redirects=0)
        text = r.text()
        check(r.status == 404, f"A's POST to {route} {fields} answered {r.status}")
        not_found(text, f"A's POST to {route} {fields}")
        check("whsec_" not in text, f"A's POST to {route} shows a secret")

    # A portal session is not a console session.
    a.goto(url("/console"))
    check(path(a) == "/console/sign-in", f"a portal session opening /console got {a.url}")

    # B's endpoint is as it was: there, active, same URL, one try, same
    # secret (after the worker's poll interval, had anything been queued).
    time.sleep(1)
    b.goto(url(b_endpoint))
    check(heading(b) == "Endpoint", f"B's endpoint is gone: {heading(b)!r}")
    facts = b.locator("dl.facts").inner_text()
    check(rx.base + "/bravo" in facts and "active" in facts, f"B's endpoint changed:\n{facts}")
    check(b_rows.count() == 1, f"B's delivery log has {b_rows.count()} tries, not 1")
    check(rx.count() == 1, f"B's receiver got {rx.count()} requests, not 1")
    follow(b, b.get_by_role("button", name="Reveal signing secret"))
    check(b.get_by_test_id("signing-secret").inner_text().strip() == b_secret, "B's signing secret changed")
