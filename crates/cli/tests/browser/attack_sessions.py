"""Attack: reusing sessions that ended. A portal link opened a second time
(from another browser) shows the ended page; a console session's cookie
kept past sign-out is refused; sessions revoked from the console's Sessions
page (one console session, one portal session, all of an account's portal
sessions) end at once; the Sessions page shows no token."""

import hashlib

from harness import (
    OPERATOR_KEY,
    browser,
    check,
    enter_portal,
    follow,
    heading,
    new_page,
    path,
    portal_link,
    sign_in,
    sign_out,
    url,
)

ENDED = "This page has expired"


def cookie(page, name):
    found = [c for c in page.context.cookies() if c["name"] == name]
    check(len(found) == 1, f"{len(found)} {name} cookies in the browser")
    return found[0]


def prefix(token):
    """How the Sessions page names a session: its digest's first 12 hex digits."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def portal_ended(page):
    response = page.goto(url("/portal"))
    return response.status == 410 and heading(page) == ENDED


def console_ended(page):
    page.goto(url("/console"))
    return path(page) == "/console/sign-in"


def revoke(admin, token):
    """Revokes the session holding `token` from the Sessions page."""
    follow(admin, admin.get_by_role("link", name="Sessions"))
    row = admin.locator("tr", has_text=prefix(token))
    check(row.count() == 1, f"the Sessions page lists {row.count()} rows for session {prefix(token)}")
    admin.once("dialog", lambda d: d.accept())
    follow(admin, row.get_by_role("button", name="Revoke"))
    check("Revoked" in admin.locator("[role=status]").inner_text(), "no confirmation of the revocation")
    check(admin.locator("tr", has_text=prefix(token)).count() == 0, "the revoked session is still listed")


with browser() as tenant:
    b = tenant.context.browser

    # A used portal link, opened again from another browser: ended.
    link = portal_link("acct_sessions")
    enter_portal(tenant, link)
    check(heading(tenant) == "Endpoints", f"the link opened {heading(tenant)!r}")
    thief = new_page(b)
    thief.goto(link)  # not from the platform's pages: a button to press
    follow(thief, thief.get_by_role("button", name="Open the webhook settings"))
    check(heading(thief) == ENDED, f"a used link opened {heading(thief)!r}")
    # Login CSRF: a link sent to a browser with a session of its own opens
    # nothing by itself, and says which session it would end.
    lure = portal_link("acct_sessions_lure")
    tenant.goto(lure)
    tenant.wait_for_timeout(500)
    check(path(tenant) == "/portal/enter", f"a foreign link moved on by itself to {tenant.url}")
    check("acct_sessions" in tenant.locator("main").inner_text(), "the link's page does not name the session it would end")
    tenant.goto(url("/portal"))
    check(portal_ended(thief), "the used link gave the second browser a session")
    check(not portal_ended(tenant), "opening the used link again ended the first browser's session")

    # A console cookie kept past sign-out.
    op = new_page(b)
    sign_in(op, OPERATOR_KEY)
    kept = cookie(op, "hw_console")
    check(kept["httpOnly"] and kept["sameSite"] == "Strict" and kept["path"] == "/console", f"the console cookie is {kept}")
    csrf = op.locator("input[name=_csrf]").first.get_attribute("value")
    sign_out(op)
    op.context.add_cookies([kept])
    check(console_ended(op), "the cookie kept past sign-out still opens the console")
    op.context.add_cookies([kept])
    r = op.request.post(url("/console/sign-out"), form={"_csrf": csrf}, max_redirects=0)
    check(r.status == 403 and "session has ended" in r.text(), f"a POST with the signed-out session answered {r.status}")

    # Revoked from the Sessions page: a console session, a portal session.
    admin = new_page(b)
    sign_in(admin, OPERATOR_KEY)
    victim = new_page(b)
    sign_in(victim, OPERATOR_KEY)
    check(not console_ended(victim), "the victim's console session did not start")
    victim_token = cookie(victim, "hw_console")["value"]
    tenant_token = cookie(tenant, "hw_portal")["value"]
    follow(admin, admin.get_by_role("link", name="Sessions"))
    page_text = admin.content()
    for t in (victim_token, tenant_token, cookie(admin, "hw_console")["value"]):
        check(t not in page_text, "the Sessions page shows a session's token")
    revoke(admin, victim_token)
    check(console_ended(victim), "the revoked console session still opens the console")
    revoke(admin, tenant_token)
    check(portal_ended(tenant), "the revoked portal session still opens the portal")

    # Every portal session of an account at once.
    first, second = new_page(b), new_page(b)
    enter_portal(first, portal_link("acct_sessions_all"))
    enter_portal(second, portal_link("acct_sessions_all"))
    other = new_page(b)
    enter_portal(other, portal_link("acct_sessions_other"))
    follow(admin, admin.get_by_role("link", name="Sessions"))
    admin.get_by_label("Account id").fill("acct_sessions_all")
    admin.once("dialog", lambda d: d.accept())  # it asks first
    follow(admin, admin.get_by_role("button", name="Revoke the account's portal sessions"))
    check(portal_ended(first) and portal_ended(second), "a portal session of the revoked account still works")
    check(not portal_ended(other), "revoking one account's sessions ended another account's")
    check(not console_ended(admin), "revoking portal sessions ended the operator's own")
