"""Attack: guessing the operator key. Ten wrong keys within a minute from
one client are each refused (401); the eleventh attempt answers 429 with
Retry-After and a sign-in page saying to wait — even with the right key."""

from harness import OPERATOR_KEY, browser, check, path, url

LIMIT = 10


def attempt(page, key):
    page.goto(url("/console/sign-in"))
    page.get_by_label("Operator key").fill(key)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Sign in").click()
    return nav.value


with browser() as page:
    for i in range(LIMIT):
        r = attempt(page, f"guess-{i:02d}-" + "k" * 30)
        check(r.status == 401, f"wrong key {i + 1} answered {r.status}, not 401")
        check("not accepted" in page.locator("[role=alert]").inner_text(), f"wrong key {i + 1} shows no refusal")
    r = attempt(page, "guess-11-" + "k" * 30)
    check(r.status == 429, f"wrong key {LIMIT + 1} answered {r.status}, not 429")
    wait = r.headers.get("retry-after", "")
    check(wait.isdigit() and 1 <= int(wait) <= 60, f"the 429 says Retry-After {wait!r}")
    check("Too many attempts" in page.locator("[role=alert]").inner_text(), "the 429 page does not say why")
    check(page.get_by_label("Operator key").is_visible(), "the 429 page has no sign-in form")
    r = attempt(page, OPERATOR_KEY)
    check(r.status == 429 and path(page) == "/console/sign-in", f"the right key while limited answered {r.status} at {page.url}")
    page.goto(url("/console"))
    check(path(page) == "/console/sign-in", "a limited sign-in still started a session")
