"""Smoke: the operator console's sign-in refuses a wrong key and accepts the
right one, shows the overview, and signs out; no console errors throughout."""

from harness import OPERATOR_KEY, browser, check, heading, path, sign_in, sign_out, url

with browser() as page:
    sign_in(page, "not-the-operator-key-" + "x" * 24)
    alert = page.locator("[role=alert]")
    check(path(page) == "/console/sign-in", f"a wrong key led to {page.url}")
    check(
        alert.count() > 0 and "not accepted" in alert.first.inner_text(),
        "a wrong key shows no [role=alert] saying 'not accepted'",
    )
    check(OPERATOR_KEY not in page.content(), "the page shows the key")

    sign_in(page, OPERATOR_KEY)
    check(path(page) == "/console", f"the right key led to {page.url}, not /console")
    check(heading(page) == "Overview", f"the console's heading is {heading(page)!r}")
    check(OPERATOR_KEY not in page.content(), "the console shows the key")
    # (the overview screenshot is operator_inbound's, once it has data)

    form = page.locator("form", has=page.get_by_role("button", name="Sign out"))
    check(form.count() == 1, "no form around the Sign out button")
    check(
        form.get_attribute("action") in ("/console/sign-out", url("/console/sign-out")),
        "Sign out does not post to /console/sign-out",
    )
    check((form.get_attribute("method") or "").lower() == "post", "Sign out is not a POST")
    sign_out(page)

    page.goto(url("/console"))
    check(path(page) == "/console/sign-in", f"after sign-out /console led to {page.url}")
