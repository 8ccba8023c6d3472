"""Attack: cross-site request forgery. A page on another origin (a server
this scenario runs on another port, and `localhost` for another site)
auto-submits forms to the console's and the portal's state-changing routes
in a browser signed in to both — without the CSRF token, and with the real
one as if it had leaked: every one is refused and the resources remain.
From our own origin, a POST without the token, with a wrong one, with
another session's, or from a form whose hidden token was edited or removed
is refused too; the untouched form works."""

import html

from harness import (
    OPERATOR_KEY,
    browser,
    check,
    enter_portal,
    follow,
    heading,
    operator,
    path,
    portal_link,
    sign_in,
    url,
)
from receiver import Attacker

FOREIGN = "This form was sent from another site"
STALE = "security token is missing or stale"


def integration(name):
    status, answer = operator(
        "POST",
        "/api/v1/integrations",
        {"name": name, "scheme": "stripe", "secret": "whsec_csrf_" + "3c" * 12, "targetUrl": url("/api/v1/internal/delivery-sink/csrf")},
    )
    check(status == 201, f"creating {name} answered {status}: {answer}")


def exists(name):
    return operator("GET", f"/api/v1/integrations/{name}")[0] == 200


def token(page):
    """The CSRF token of the page's session (its forms' hidden field)."""
    return page.locator("input[name=_csrf]").first.get_attribute("value")


def forged(page, origin, target, fields):
    """Opens `origin`'s page, which posts `fields` to `target` on load;
    answers the status our server gave that POST."""
    inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items())
    attacker.html = (
        f'<!doctype html><title>Win a prize</title><form method="post" action="{target}">{inputs}</form>'
        "<script>document.forms[0].submit()</script>"
    )
    with page.expect_response(lambda r: r.url == target and r.request.method == "POST") as posted:
        page.goto(origin + "/prize")
    page.wait_for_load_state()
    sent = posted.value.request.all_headers()
    return posted.value.status, sent.get("cookie", ""), sent.get("sec-fetch-site")


def refused_from(page, origin, target, fields, what):
    status, cookie, site = forged(page, origin, target, fields)
    if site == "same-site":
        # Another port of the same host is the same site: the browser sends
        # the SameSite=Strict cookie, so only the server's own check stands.
        check("hw_" in cookie, f"{what} from {origin} went without the session cookie")
    check(status == 403, f"{what} from {origin} answered {status}, not 403")
    check(FOREIGN in page.inner_text("main"), f"{what} from {origin} does not say it came from another site")


def accept_next_dialog(page):
    page.once("dialog", lambda d: d.accept())


with Attacker() as attacker, browser() as page:
    integration("csrf-target")
    integration("csrf-control")

    # The victim: signed in to the console and in a portal session.
    sign_in(page, OPERATOR_KEY)
    check(path(page) == "/console", f"signing in led to {page.url}")
    console_token = token(page)
    enter_portal(page, portal_link("acct_csrf"))
    portal_token = token(page)
    follow(page, page.get_by_role("link", name="Add endpoint"))
    page.get_by_label("Endpoint URL").fill("http://127.0.0.1:9/csrf")
    page.get_by_label("All event types").check()
    follow(page, page.get_by_role("button", name="Add endpoint"))
    endpoint = path(page)

    console_delete = url("/console/integrations/csrf-target/delete")
    portal_delete = url(endpoint + "/delete")
    same_site = attacker.base  # another port of 127.0.0.1: the cookies go along
    cross_site = attacker.base.replace("127.0.0.1", "localhost")
    for origin in (same_site, cross_site):
        refused_from(page, origin, console_delete, {}, "a forged console delete without a token")
        refused_from(page, origin, console_delete, {"_csrf": console_token}, "a forged console delete with the token")
        refused_from(page, origin, portal_delete, {}, "a forged portal delete without a token")
        refused_from(page, origin, portal_delete, {"_csrf": portal_token}, "a forged portal delete with the token")
    refused_from(page, same_site, url("/console/sign-out"), {"_csrf": console_token}, "a forged sign-out")
    check(exists("csrf-target"), "a forged request deleted the integration")

    # From our own origin, without the right token.
    for fields, what in (
        ({}, "no token"),
        ({"_csrf": "wrong"}, "a wrong token"),
        ({"_csrf": console_token[:-1]}, "a truncated token"),
        ({"_csrf": portal_token}, "the portal session's token"),
    ):
        r = page.request.post(console_delete, form=fields, max_redirects=0)
        check(r.status == 403 and STALE in r.text(), f"a console POST with {what} answered {r.status}")
        r = page.request.post(portal_delete, form=fields if fields.get("_csrf") != portal_token else {"_csrf": console_token}, max_redirects=0)
        check(r.status == 403 and STALE in r.text(), f"a portal POST with {what} answered {r.status}")

    # A form whose hidden token was edited, or removed, in the page.
    page.goto(url("/console/integrations/csrf-target"))
    delete_form = page.locator("form", has=page.get_by_role("button", name="Delete integration"))
    delete_form.locator("input[name=_csrf]").evaluate("e => e.value = e.value.split('').reverse().join('')")
    accept_next_dialog(page)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Delete integration").click()
    check(nav.value.status == 403 and STALE in page.inner_text("main"), f"an edited token answered {nav.value.status}")
    page.goto(url(endpoint))
    delete_form = page.locator("form", has=page.get_by_role("button", name="Delete endpoint"))
    delete_form.locator("input[name=_csrf]").evaluate("e => e.remove()")
    accept_next_dialog(page)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Delete endpoint").click()
    check(nav.value.status == 403 and STALE in page.inner_text("main"), f"a removed token answered {nav.value.status}")

    # Nothing was deleted, and both sessions still work.
    check(exists("csrf-target"), "the integration was deleted")
    page.goto(url(endpoint))
    check(heading(page) == "Endpoint", f"the endpoint is gone: {heading(page)!r}")
    page.goto(url("/console/integrations"))
    check(heading(page) == "Integrations", f"the console session ended: {page.url}")

    # The untouched form works: the refusals above were about the forgery.
    page.goto(url("/console/integrations/csrf-control"))
    accept_next_dialog(page)
    follow(page, page.get_by_role("button", name="Delete integration"))
    check("The integration was deleted" in page.inner_text("main"), "deleting through the real form did not work")
    check(not exists("csrf-control"), "the real form's delete did not delete")
