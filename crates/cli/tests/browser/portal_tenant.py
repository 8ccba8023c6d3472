"""Tenant portal: the platform mints a link (operator key), the tenant opens
it, adds an endpoint (a receiver this scenario runs), sends a test event,
sees it delivered (signed with the endpoint's secret), retries it and sees
the second try fail as the receiver was told; reveals the signing secret;
an address the SSRF rules refuse shows the API's refusal as a form error."""

import base64
import hashlib
import hmac

from harness import (
    browser,
    check,
    enter_portal,
    follow,
    heading,
    path,
    portal_link,
    reload_until,
    shot,
    shot_phone,
    url,
)
from receiver import Receiver

ACCOUNT = "acct_portal_tenant"


def standard_webhooks_ok(secret, req):
    """Whether `req` is signed with `secret` as Standard Webhooks says:
    `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`."""
    h = {k.lower(): v for k, v in req["headers"].items()}
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + req["body"]
    mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return f"v1,{mac}" in h["webhook-signature"].split()


with Receiver() as rx, browser() as page:
    enter_portal(page, portal_link(ACCOUNT), from_platform=True)
    check(heading(page) == "Endpoints", f"the portal opens on {heading(page)!r}")
    check(ACCOUNT in page.inner_text("header"), "the portal does not say which account it shows")

    # Add an endpoint: the receiver.
    follow(page, page.get_by_role("link", name="Add endpoint"))
    target = rx.base + "/hooks/orders"
    page.get_by_label("Endpoint URL").fill(target)
    page.get_by_label("Description").fill("Orders service")
    page.get_by_label("All event types").check()
    follow(page, page.get_by_role("button", name="Add endpoint"))
    check(heading(page) == "Endpoint", f"adding an endpoint led to {heading(page)!r}")
    check("Endpoint added" in page.locator("[role=status]").inner_text(), "no confirmation of the new endpoint")
    check("whsec_" not in page.content(), "the new endpoint's page shows its signing secret unasked")
    endpoint = path(page)

    # An address the SSRF rules refuse: the API's refusal, as a form error.
    page.goto(url("/portal/endpoints/new"))
    page.get_by_label("Endpoint URL").fill("http://169.254.169.254/latest/meta-data/")
    page.get_by_label("All event types").check()
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Add endpoint").click()
    status = nav.value.status
    check(400 <= status < 500, f"the refused address answered {status}")
    check(heading(page) == "Add endpoint", f"the refused address led to {heading(page)!r}")
    alert = page.locator("[role=alert]")
    check(alert.count() == 1 and alert.inner_text().strip(), "the refusal shows no [role=alert]")
    print(f"SSRF refusal shown: {alert.inner_text().strip()!r}")
    check(
        page.get_by_label("Endpoint URL").input_value() == "http://169.254.169.254/latest/meta-data/",
        "the form lost the typed address",
    )

    # The list: one endpoint (the refused one was not added).
    follow(page, page.get_by_role("link", name="Endpoints"))
    check(heading(page) == "Endpoints", f"the list's heading is {heading(page)!r}")
    listed = page.locator("tbody tr")
    check(listed.count() == 1, f"the list shows {listed.count()} endpoints, not 1")
    check("Orders service" in listed.first.inner_text() and target in listed.first.inner_text(), "the list misses the endpoint")
    shot(page, "portal-endpoints")
    follow(page, listed.first.get_by_role("link"))
    check(path(page) == endpoint, f"the list's link led to {page.url}")

    # The signing secret, on request only.
    follow(page, page.get_by_role("button", name="Reveal signing secret"))
    check(heading(page) == "Signing secret", f"revealing the secret led to {heading(page)!r}")
    secret = page.get_by_test_id("signing-secret").inner_text().strip()
    check(secret.startswith("whsec_"), f"the signing secret shown is {secret[:8]!r}…, not whsec_…")
    follow(page, page.get_by_role("link", name="Back to the endpoint"))
    check(path(page) == endpoint, f"back from the secret led to {page.url}")

    # A test event, delivered to the receiver and signed with the secret.
    follow(page, page.get_by_role("button", name="Send test event"))
    check(path(page) == endpoint, f"sending a test event led to {page.url}")
    note = page.locator("[role=status]")
    check(note.count() == 1 and "Test event sent" in note.inner_text(), "no confirmation of the test event")
    rows = page.get_by_test_id("delivery")
    reload_until(
        page, lambda: rows.count() == 1 and "succeeded" in rows.first.inner_text(), "test event delivered", every=1
    )
    check(rx.count() == 1, f"the receiver got {rx.count()} requests, not 1")
    check(rx.requests[0]["path"] == "/hooks/orders", f"delivered to {rx.requests[0]['path']}")
    check(standard_webhooks_ok(secret, rx.requests[0]), "the delivery is not signed with the endpoint's secret")

    # Retry it; this time the receiver fails, and the log shows that try.
    rx.answer(500)
    follow(page, rows.first.get_by_role("button", name="Retry"))
    check("Retry queued" in page.locator("[role=status]").inner_text(), "no confirmation of the retry")
    reload_until(
        page,
        lambda: rows.count() >= 2 and any("500" in rows.nth(i).inner_text() for i in range(rows.count())),
        "second try answered 500 in the delivery log",
        every=1,
    )
    check(rx.count() >= 2, f"the receiver got {rx.count()} requests after the retry")
    check(any("succeeded" in rows.nth(i).inner_text() for i in range(rows.count())), "the first try is gone from the log")
    shot(page, "portal-endpoint")
    shot_phone(page, "portal-endpoint")

    # The log's status filter.
    page.get_by_label("Status").select_option("succeeded")
    follow(page, page.get_by_role("button", name="Filter"))
    check(rows.count() == 1 and "succeeded" in rows.first.inner_text(), "the succeeded filter does not show just the first try")
    page.get_by_label("Status").select_option("failed")
    follow(page, page.get_by_role("button", name="Filter"))
    shown = [rows.nth(i).inner_text() for i in range(rows.count())]
    check(shown and all("failed" in r and "500" in r for r in shown), f"the failed filter shows {shown}")
