"""Operator, inbound: sign in, create a Stripe integration in the console's
form (forwarding to the development sink on the same server; its forwarding
secret shown once), send a webhook signed as Stripe documents it, find it in
the inbound event list, read its body (pretty-printed JSON) and forwarding
timeline, replay it with a reason and see a second forwarding try."""

import json
import time

from harness import (
    OPERATOR_KEY,
    browser,
    check,
    follow,
    heading,
    path,
    reload_until,
    send_stripe,
    shot,
    sign_in,
    url,
)

NAME = "acme-payments"
SECRET = "whsec_browser_scenario_" + "5e1f" * 6
SINK = url(f"/api/v1/internal/delivery-sink/{NAME}")

with browser() as page:
    sign_in(page, OPERATOR_KEY)
    check(path(page) == "/console", f"signing in led to {page.url}")

    # Create the integration through the form, as an operator would.
    follow(page, page.get_by_role("link", name="Integrations"))
    follow(page, page.get_by_role("link", name="New integration"))
    check(heading(page) == "New integration", f"the form's heading is {heading(page)!r}")
    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Scheme").select_option("stripe")
    page.get_by_label("Forward to").fill(SINK)
    page.get_by_label("Provider secret").fill(SECRET)
    follow(page, page.get_by_role("button", name="Create integration"))
    check(heading(page) == f"Integration {NAME} created", f"after creating: {heading(page)!r}")
    forwarding = page.get_by_test_id("forwarding-secret").inner_text().strip()
    check(len(forwarding) >= 16, f"the forwarding secret shown is {forwarding!r}")
    check(SECRET not in page.content(), "the provider secret is shown back")

    # The list shows it; the forwarding secret is never shown again.
    page.goto(url("/console/integrations"))
    row = page.locator("tr", has=page.get_by_role("link", name=NAME))
    check(row.count() == 1, "the integration is not in the list")
    check("stripe" in row.inner_text(), "the list does not show the scheme")
    shot(page, "console-integrations")
    follow(page, page.get_by_role("link", name=NAME))
    check(heading(page) == f"Integration {NAME}", f"the integration's heading is {heading(page)!r}")
    content = page.content()
    check(forwarding not in content and SECRET not in content, "a secret is shown on the integration's page")

    # A webhook signed the way Stripe documents it.
    event_id = f"evt_browser_{int(time.time() * 1000)}"
    body = {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_123", "amount": 4200, "currency": "eur"}},
    }
    raw = json.dumps(body, separators=(",", ":"))
    status = send_stripe(NAME, SECRET, raw)
    check(status in (200, 202), f"the signed webhook answered {status}")

    # It appears in the inbound event list.
    page.goto(url("/console/inbound"))
    row = page.locator("tr", has_text=event_id)
    reload_until(page, lambda: row.count() == 1, "the event in the inbound list")
    check(NAME in row.inner_text(), "the event's row does not name the provider")
    follow(page, row.locator("a").first)
    check(heading(page).startswith("Inbound event ie_"), f"the event's heading is {heading(page)!r}")

    # Its body, pretty-printed, as text.
    shown = page.get_by_test_id("event-body").inner_text()
    check(json.loads(shown) == body, f"the body shown is not the body sent:\n{shown}")
    check('\n  "id": "' + event_id in shown or '"id": "' + event_id in shown, "the body is not pretty-printed")
    check("\n" in shown.strip(), "the body is shown on one line, not pretty-printed")

    # The forwarding timeline: one try, delivered to the sink.
    tries = page.get_by_test_id("forwarding-timeline").locator("li")
    reload_until(
        page,
        lambda: tries.count() == 1 and "succeeded" in tries.first.inner_text(),
        "the first forwarding try to succeed",
    )

    # Replay with a reason; the timeline gains a second try.
    page.get_by_label("Reason").fill("the browser scenario checks replay")
    follow(page, page.get_by_role("button", name="Replay event"))
    status_note = page.locator("[role=status]")
    check(status_note.count() == 1 and "Replay queued" in status_note.inner_text(), "no confirmation of the replay")
    reload_until(
        page,
        lambda: tries.count() == 2 and all("succeeded" in tries.nth(i).inner_text() for i in range(2)),
        "a second forwarding try that succeeded",
    )
    check("replay" in tries.nth(1).inner_text().lower(), f"the second try is not a replay: {tries.nth(1).inner_text()!r}")
    shot(page, "console-inbound-event")

    # The overview again, its chart counting the webhook once the replica's
    # activity counts are flushed (every 5 s).
    follow(page, page.get_by_role("link", name="Overview"))
    check(heading(page) == "Overview", f"the overview's heading is {heading(page)!r}")
    reload_until(page, lambda: "accepted: 1 in all" in page.inner_text("main"), "accepted webhook in the chart", seconds=12, every=1)
    shot(page, "console-overview")
