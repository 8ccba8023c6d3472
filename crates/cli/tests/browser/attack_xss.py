"""Attack: values that would run script if rendered as markup — an endpoint
description, an inbound body and header, and values a page reflects back
(a search, a refused form) — show as text, run nothing (no `window.__pwned`,
no dialog), and cause no CSP violation or failed resource (both would be
recorded by the harness and fail the scenario)."""

import json

from harness import (
    OPERATOR_KEY,
    browser,
    check,
    enter_portal,
    follow,
    heading,
    new_page,
    operator,
    path,
    portal_link,
    reload_until,
    send_stripe,
    sign_in,
    tenant as tenant_api,
    url,
)

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror="window.__pwned=1">'
JS_URL = "javascript:window.__pwned=1"
PAYLOADS = [SCRIPT, IMG, JS_URL]
DESCRIPTION = " ".join(PAYLOADS)

dialogs = []


def guard(page):
    """Records any dialog (`alert(…)` would open one) instead of letting it block."""
    page.on("dialog", lambda d: (dialogs.append(f"{d.type} on {page.url}: {d.message}"), d.dismiss()))
    return page


def unharmed(page, where):
    """Nothing ran and nothing was turned into markup on this page."""
    check(page.evaluate("typeof window.__pwned") == "undefined", f"window.__pwned is set on {where}")
    check(not dialogs, f"a dialog opened: {dialogs}")
    check(page.locator("main img").count() == 0, f"an <img> was made from a value on {where}")
    check(page.locator("script:not([src])").count() == 0, f"an inline <script> is in {where}")
    check(page.locator('[href^="javascript:" i]').count() == 0, f"a javascript: link is on {where}")
    check(page.locator("[onerror]").count() == 0, f"an onerror attribute is on {where}")


def csp_of(response):
    csp = response.headers.get("content-security-policy", "")
    check("script-src 'self'" in csp and "unsafe-inline" not in csp, f"the page's CSP is {csp!r}")


with browser() as tenant:
    guard(tenant)

    # Portal: an endpoint whose description is every payload.
    enter_portal(tenant, portal_link("acct_xss"))
    follow(tenant, tenant.get_by_role("link", name="Add endpoint"))
    tenant.get_by_label("Endpoint URL").fill("http://127.0.0.1:9/xss")
    tenant.get_by_label("Description").fill(DESCRIPTION)
    tenant.get_by_label("All event types").check()
    follow(tenant, tenant.get_by_role("button", name="Add endpoint"))
    check(heading(tenant) == "Endpoint", f"adding the endpoint led to {heading(tenant)!r}")
    webhook_id = path(tenant).rsplit("/", 1)[1]
    check(tenant.get_by_label("Description").input_value() == DESCRIPTION, "the description field does not hold the text")
    unharmed(tenant, "the portal's endpoint page")
    response = tenant.goto(url("/portal"))
    csp_of(response)
    cell = tenant.locator("tbody tr td").nth(1)
    check(cell.inner_text().strip() == DESCRIPTION, f"the list shows the description as {cell.inner_text()!r}")
    check(cell.is_visible(), "the description is not visible")
    unharmed(tenant, "the portal's endpoint list")

    # Portal: the endpoint's controls, set over the API, hold the payloads
    # too (the filter's value; a header's value, never shown).
    status, answer = tenant_api("acct_xss", "PATCH", f"/v1/webhooks/{webhook_id}", {
        "filter": {"pointer": "/" + IMG, "oneOf": PAYLOADS},
        "headers": [{"name": "x-note", "value": "header-value-" + IMG},
                    {"name": "x-key", "value": "secret-value-" + SCRIPT, "secret": True}],
        "rateLimitPerSecond": 5,
    })
    check(status == 200, f"setting the controls answered {status}: {answer}")
    tenant.goto(url(f"/portal/endpoints/{webhook_id}"))
    shown = tenant.locator("dt", has_text="Filter").locator("xpath=following-sibling::dd[1]")
    check(json.loads(shown.inner_text()) == {"pointer": "/" + IMG, "oneOf": PAYLOADS},
          f"the filter is shown as {shown.inner_text()!r}")
    headers = tenant.locator("dt", has_text="Headers").locator("xpath=following-sibling::dd[1]")
    check(headers.inner_text().strip() == "x-note, x-key (secret)", f"the headers are shown as {headers.inner_text()!r}")
    check("header-value-" not in tenant.content() and "secret-value-" not in tenant.content(),
          "a header's value is on the page")
    unharmed(tenant, "the portal's endpoint page with its controls")

    # Portal: a refused form shows what was typed back, as text.
    tenant.goto(url("/portal/endpoints/new"))
    tenant.get_by_label("Endpoint URL").fill("http://169.254.169.254/")
    tenant.get_by_label("Description").fill(DESCRIPTION)
    tenant.get_by_label("Other types or patterns").fill(IMG)
    follow(tenant, tenant.get_by_role("button", name="Add endpoint"))
    check(tenant.locator("[role=alert]").count() == 1, "the refused form shows no alert")
    check(tenant.get_by_label("Description").input_value() == DESCRIPTION, "the refused form lost the description")
    unharmed(tenant, "the portal's refused form")

    # Console: the same description on the operator's webhook page.
    op = guard(new_page(tenant.context.browser))
    sign_in(op, OPERATOR_KEY)
    response = op.goto(url(f"/console/webhooks/{webhook_id}"))
    csp_of(response)
    described = op.locator("dt", has_text="Description").locator("xpath=following-sibling::dd[1]")
    check(described.inner_text().strip() == DESCRIPTION, f"the console shows the description as {described.inner_text()!r}")
    check(described.is_visible(), "the description is not visible in the console")
    unharmed(op, "the console's webhook page")

    # Inbound: a verified event whose body and a kept header carry the payloads.
    secret = "whsec_xss_" + "7a" * 12
    status, answer = operator(
        "POST",
        "/api/v1/integrations",
        {"name": "xss-provider", "scheme": "stripe", "secret": secret, "targetUrl": url("/api/v1/internal/delivery-sink/xss")},
    )
    check(status == 201, f"creating the integration answered {status}: {answer}")
    body = {"id": "evt_xss_1", "object": "event", "note": SCRIPT, "img": IMG, "link": JS_URL}
    raw = json.dumps(body, separators=(",", ":"))
    status = send_stripe("xss-provider", secret, raw, {"x-note": IMG, "x-script": SCRIPT, "x-link": JS_URL})
    check(status in (200, 202), f"the signed webhook answered {status}")
    op.goto(url("/console/inbound?provider=xss-provider"))
    row = op.locator("tr", has_text="evt_xss_1")
    reload_until(op, lambda: row.count() == 1, "the event in the inbound list")
    follow(op, row.locator("a").first)
    shown = op.get_by_test_id("event-body").inner_text()
    check(json.loads(shown) == body, f"the body shown is not the body sent:\n{shown}")
    for p in PAYLOADS:
        check(json.dumps(p)[1:-1] in shown, f"the body does not show {p!r} as text")
    for name, value in (("x-note", IMG), ("x-script", SCRIPT), ("x-link", JS_URL)):
        cell = op.locator("tr", has=op.locator("td", has_text=name)).locator("td").nth(1)
        check(cell.count() == 1 and cell.inner_text().strip() == value, f"the header {name} is not shown as its text")
        check(cell.is_visible(), f"the header {name} is not visible")
    unharmed(op, "the console's inbound event page")

    # Console: values the page reflects back (a search; a refused form).
    response = op.goto(url("/console/inbound?" + "q=" + "%22%3E%3Cimg%20src%3Dx%20onerror%3D%22window.__pwned%3D1%22%3E"))
    csp_of(response)
    check(op.get_by_label("Event or delivery id").input_value() == IMG, "the search box does not hold the text searched")
    unharmed(op, "the console's inbound search")
    op.goto(url("/console/integrations/new"))
    op.get_by_label("Name").fill(IMG)
    op.get_by_label("Forward to").fill("http://127.0.0.1:9/x")
    op.get_by_label("Provider secret").fill("whsec_irrelevant")
    op.locator("details summary").click()
    op.get_by_label("Signature header").fill(SCRIPT)
    op.get_by_label("Signature prefix").fill(JS_URL)
    follow(op, op.get_by_role("button", name="Create integration"))
    check(op.locator("[role=alert]").count() == 1, "the refused integration shows no alert")
    check(op.get_by_label("Name").input_value() == IMG, "the refused form lost the name")
    check(op.get_by_label("Signature prefix").input_value() == JS_URL, "the refused form lost the prefix")
    unharmed(op, "the console's refused integration form")
    print(f"refused integration: {op.locator('[role=alert]').inner_text().strip()!r}")
