"""The harness itself: chromium starts, a page of the server under test loads,
and nothing is reported in the console."""

from harness import browser, check, url

with browser() as page:
    response = page.goto(url("/openapi.json"))
    check(response is not None and response.ok, f"/openapi.json answered {response and response.status}")
    check("openapi" in page.content(), "/openapi.json does not mention openapi")
