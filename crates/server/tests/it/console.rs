//! The console and the portal over HTTP: sign-in and its limit, the CSRF
//! and origin guard, portal links (single use, one account), expiry,
//! escaping and the security headers, and the private operator listener.
//! (The browser scenarios in the CLI crate drive the same pages in chromium.)

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use serde_json::json;

on_both!(
    a_portal_link_works_once_and_sees_one_account,
    forms_need_their_token_and_this_site,
    sign_in_refuses_wrong_keys_and_limits_attempts,
    sessions_expire_and_sign_out_ends_them,
    pages_escape_what_they_show_and_forbid_inline_script,
    a_receivers_answer_is_shown_as_it_came_and_escaped,
);

/// A browser-like client: cookies by hand, redirects not followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` of the cookie a response sets.
fn cookie_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|c| !c.ends_with('='))
        .expect("a session cookie")
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="_csrf" value=""#)
        .expect("a form with _csrf")
        + 20;
    html[at..].split('"').next().unwrap_or_default().to_owned()
}

/// Signs in to the console; answers the session cookie.
async fn sign_in(app: &TestApp) -> String {
    let resp = browser()
        .post(app.url("/console/sign-in"))
        .form(&[("key", OPERATOR_KEY)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = cookie_of(&resp);
    assert!(cookie.starts_with("hw_console="), "{cookie}");
    let set = resp.headers()["set-cookie"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    cookie
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String) {
    let resp = browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

async fn mint(app: &TestApp, account: &str) -> String {
    let (status, body, _) = app
        .operator(
            reqwest::Method::POST,
            "/api/v1/portal-sessions",
            Some(json!({"accountId": account})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["url"].as_str().expect("url").to_owned();
    assert!(body["expiresAt"].as_str().is_some());
    // The link names the listen address (no public URL configured here).
    url.replacen("127.0.0.1:0", &app.addr.to_string(), 1)
}

async fn a_portal_link_works_once_and_sees_one_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (mine, _) = app
        .create_webhook("acct_a", "https://example.com/a", &["*"])
        .await;
    let (theirs, _) = app
        .create_webhook("acct_b", "https://example.com/b", &["*"])
        .await;
    let link = mint(&app, "acct_a").await;
    // Opening the link changes nothing: a scanner's GET neither spends it
    // nor gets a session; the page's form does, from this site only.
    let looked = browser().get(&link).send().await.expect("look");
    assert_eq!(looked.status(), StatusCode::OK);
    assert!(cookie_of_none(&looked));
    let head = browser().head(&link).send().await.expect("head");
    assert!(cookie_of_none(&head));
    let token = link.split("token=").nth(1).expect("token").to_owned();
    let forged = browser()
        .post(app.url("/portal/enter"))
        .header("origin", "https://evil.example")
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("cross-site enter");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let first = open_link(&app, &link).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let cookie = cookie_of(&first);
    assert!(cookie.starts_with("hw_portal="));
    // Single use: the same link again is over.
    let again = open_link(&app, &link).await;
    assert_eq!(again.status(), StatusCode::GONE);
    assert!(cookie_of_none(&again));

    let (status, list) = page(&app, &cookie, "/portal").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains("https://example.com/a") && !list.contains("example.com/b"),
        "{list}"
    );
    let (status, _) = page(&app, &cookie, &format!("/portal/endpoints/{mine}")).await;
    assert_eq!(status, StatusCode::OK);
    // Another account's endpoint answers as if it did not exist, for reads and actions.
    let (status, body) = page(&app, &cookie, &format!("/portal/endpoints/{theirs}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, mine_page) = page(&app, &cookie, &format!("/portal/endpoints/{mine}")).await;
    let token = csrf_of(&mine_page);
    for action in ["delete", "secret", "rotate"] {
        let resp = browser()
            .post(app.url(&format!("/portal/endpoints/{theirs}/{action}")))
            .header("cookie", &cookie)
            .form(&[("_csrf", token.as_str())])
            .send()
            .await
            .expect("action");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{action}");
        assert!(
            !resp.text().await.unwrap_or_default().contains("whsec_"),
            "{action}"
        );
    }
    let (status, _, _) = app
        .get(&format!("/v1/webhooks/{theirs}"), &app.tenant("acct_b"))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the other account's endpoint is untouched"
    );
    // The portal cookie is no console session.
    let (status, _) = page(&app, &cookie.replace("hw_portal", "hw_console"), "/console").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The mint is audited with the account, never the link's token.
    let token_in_link = link.split("token=").nth(1).expect("token");
    let (_, trail, _) = app
        .operator(
            reqwest::Method::GET,
            "/api/v1/audit-entries?limit=100",
            None,
        )
        .await;
    let trail = trail.to_string();
    assert!(
        trail.contains("portal.link_minted") && trail.contains("portal.enter"),
        "{trail}"
    );
    assert!(!trail.contains(token_in_link));
    // Bad requests get clear errors.
    for (body, says) in [
        (json!({"accountId": "acct_a", "ttl": 5}), "ttl"),
        (json!({"accountId": "bad id!"}), "accountId"),
        (json!({}), "accountId"),
    ] {
        let (status, err, _) = app
            .operator(reqwest::Method::POST, "/api/v1/portal-sessions", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
    let (status, _, _) = app
        .post(
            "/api/v1/portal-sessions",
            "not-a-key",
            json!({"accountId": "acct_a"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Opens a portal link as the browser does: the page, then its form.
async fn open_link(app: &TestApp, link: &str) -> reqwest::Response {
    let page = browser().get(link).send().await.expect("link page");
    assert!(cookie_of_none(&page), "a GET of the link set a cookie");
    let token = link.split("token=").nth(1).expect("token");
    browser()
        .post(app.url("/portal/enter"))
        .header("origin", format!("http://{}", app.addr))
        .form(&[("token", token)])
        .send()
        .await
        .expect("enter")
}

fn cookie_of_none(resp: &reqwest::Response) -> bool {
    resp.headers().get_all("set-cookie").iter().next().is_none()
}

async fn forms_need_their_token_and_this_site(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cookie = sign_in(&app).await;
    let (status, form) = page(&app, &cookie, "/console/integrations/new").await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf_of(&form);
    let fields = |csrf: &str| {
        vec![
            ("_csrf".to_owned(), csrf.to_owned()),
            ("name".to_owned(), "shop".to_owned()),
            ("scheme".to_owned(), "shopify".to_owned()),
            (
                "targetUrl".to_owned(),
                "https://internal.example.com/in".to_owned(),
            ),
            ("secret".to_owned(), "shpss_0123456789abcdef".to_owned()),
        ]
    };
    let post = |fields: Vec<(String, String)>, origin: Option<&'static str>| {
        let mut req = browser()
            .post(app.url("/console/integrations/new"))
            .header("cookie", &cookie)
            .form(&fields);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    // No token, a wrong one, the right one from another site: refused.
    let no_token: Vec<_> = fields(&token).into_iter().skip(1).collect();
    assert_eq!(
        post(no_token, None).await.expect("post").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(fields("forged"), None).await.expect("post").status(),
        StatusCode::FORBIDDEN
    );
    let cross = post(fields(&token), Some("https://evil.example"))
        .await
        .expect("post");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let (status, _, _) = app
        .operator(reqwest::Method::GET, "/api/v1/integrations/shop", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing was created by a refused form"
    );
    // A token of another session is no good either.
    let other = sign_in(&app).await;
    let (_, other_form) = page(&app, &other, "/console/integrations/new").await;
    assert_ne!(csrf_of(&other_form), token);
    assert_eq!(
        post(fields(&csrf_of(&other_form)), None)
            .await
            .expect("post")
            .status(),
        StatusCode::FORBIDDEN
    );
    // From this site, with its token: created, the forwarding secret shown once.
    let own = format!("http://{}", app.addr);
    let origin: &'static str = Box::leak(own.into_boxed_str());
    let created = post(fields(&token), Some(origin)).await.expect("post");
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(created
        .text()
        .await
        .unwrap_or_default()
        .contains("Forwarding secret"));
    let (status, _, _) = app
        .operator(reqwest::Method::GET, "/api/v1/integrations/shop", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Who did it is in the audit trail: the operator's key, through the console.
    let (_, trail, _) = app
        .operator(
            reqwest::Method::GET,
            "/api/v1/audit-entries?limit=100",
            None,
        )
        .await;
    assert!(trail.to_string().contains("/console"), "{trail}");
    app.stop().await;
}

async fn sign_in_refuses_wrong_keys_and_limits_attempts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for n in 0..10 {
        let resp = browser()
            .post(app.url("/console/sign-in"))
            .form(&[("key", format!("wrong-{n}"))])
            .send()
            .await
            .expect("sign in");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
        assert!(cookie_of_none(&resp));
        assert!(resp
            .text()
            .await
            .unwrap_or_default()
            .contains("not accepted"));
    }
    // The eleventh attempt in the minute is not even checked, right key or not.
    let resp = browser()
        .post(app.url("/console/sign-in"))
        .form(&[("key", OPERATOR_KEY)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie_of_none(&resp));
    app.stop().await;
}

async fn sessions_expire_and_sign_out_ends_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cookie = sign_in(&app).await;
    assert_eq!(page(&app, &cookie, "/console").await.0, StatusCode::OK);
    // Signed out: the same cookie no longer opens anything.
    let (_, overview) = page(&app, &cookie, "/console").await;
    let resp = browser()
        .post(app.url("/console/sign-out"))
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf_of(&overview))])
        .send()
        .await
        .expect("sign out");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page(&app, &cookie, "/console").await.0,
        StatusCode::SEE_OTHER
    );
    // Expiry: eight hours (the default) later the session is over.
    let cookie = sign_in(&app).await;
    app.clock
        .advance(std::time::Duration::from_secs(8 * 3600 + 1));
    let (status, _) = page(&app, &cookie, "/console").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A portal link unused past its end is over too.
    let link = mint(&app, "acct_a").await;
    app.clock
        .advance(std::time::Duration::from_secs(15 * 60 + 1));
    let resp = open_link(&app, &link).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    app.stop().await;
}

async fn pages_escape_what_they_show_and_forbid_inline_script(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hostile = r#"<script>alert(1)</script> "><img src=x onerror=alert(1)>"#;
    let (status, created, _) = app
        .post(
            "/v1/webhooks",
            &app.tenant("acct_x"),
            json!({"url": "https://example.com/x", "eventTypes": ["*"], "description": hostile}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let link = mint(&app, "acct_x").await;
    let cookie = cookie_of(&open_link(&app, &link).await);
    let resp = browser()
        .get(app.url("/portal"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("portal");
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap_or_default();
    assert!(
        !html.contains("<script>alert") && !html.contains("<img src=x"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    // The signed-in console shows the same description escaped too.
    let console = sign_in(&app).await;
    let id = created["id"].as_str().expect("id");
    let (_, op_page) = page(&app, &console, &format!("/console/webhooks/{id}")).await;
    assert!(!op_page.contains("<script>alert"), "{op_page}");
    app.stop().await;
}

/// A receiver's answer dressed up with serde_json's raw-value key (a parse
/// would show the JSON its string holds) and markup: the delivery's page
/// shows the answer as it came, escaped, never the other JSON.
async fn a_receivers_answer_is_shown_as_it_came_and_escaped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    let dressed = r#"{"$serde_json::private::RawValue":"{\"status\":\"<b>all good</b>\"}"}"#;
    rx.set_default(Reply::Full {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: dressed.into(),
    });
    let (webhook, _) = app
        .create_webhook("acct_a", &rx.url("/hook"), &["invoice.paid"])
        .await;
    app.publish("acct_a", "invoice.paid", json!({"n": 1})).await;
    app.deliver_until(std::time::Duration::from_secs(20), || rx.count() == 1)
        .await;
    // The outcome is recorded just after the answer.
    let mut id = String::new();
    for _ in 0..100 {
        let items = app.deliveries("acct_a", &webhook).await;
        if let Some(d) = items.iter().find(|d| d["responsePreview"].is_string()) {
            id = d["id"].as_str().expect("id").to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!id.is_empty(), "the outcome was recorded");
    let console = sign_in(&app).await;
    let (status, html) = page(&app, &console, &format!("/console/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("$serde_json::private::RawValue"),
        "shown as it came: {html}"
    );
    assert!(html.contains("&lt;b&gt;all good&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>all good"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn a_private_operator_listener_takes_the_console_and_operator_api_off_the_public_one() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(|raw| {
                raw.set("operator_listen", "127.0.0.1:0");
            })),
            ..Default::default()
        },
    )
    .await;
    let private = app.operator.expect("an operator listener");
    let client = browser();
    for path in [
        "/console/sign-in",
        "/console",
        "/api/v1/integrations",
        "/api/v1/portal-sessions",
    ] {
        let public = client
            .get(app.url(path))
            .header("x-internal-api-key", OPERATOR_KEY)
            .send()
            .await
            .expect("public");
        assert_eq!(
            public.status(),
            StatusCode::NOT_FOUND,
            "{path} on the public listener"
        );
    }
    let on_private = client
        .get(format!("http://{private}/console/sign-in"))
        .send()
        .await
        .expect("private");
    assert_eq!(on_private.status(), StatusCode::OK);
    let api = client
        .get(format!("http://{private}/api/v1/integrations"))
        .header("x-internal-api-key", OPERATOR_KEY)
        .send()
        .await
        .expect("private api");
    assert_eq!(api.status(), StatusCode::OK);
    // The tenants' side stays public: the API, the portal and the providers' route.
    let tenant = client
        .get(app.url("/v1/webhooks"))
        .send()
        .await
        .expect("tenant");
    assert_eq!(tenant.status(), StatusCode::UNAUTHORIZED);
    let portal = client.get(app.url("/portal")).send().await.expect("portal");
    assert_eq!(portal.status(), StatusCode::GONE);
    let receive = client
        .post(app.url("/api/v1/webhooks/nobody"))
        .body("{}")
        .send()
        .await
        .expect("receive");
    assert_ne!(receive.status(), StatusCode::OK);
    app.stop().await;
}

/// Keys, link tokens, cookies and secrets shown on request never reach the
/// logs, whatever the pages did with them.
#[tokio::test]
async fn what_the_pages_handle_never_reaches_the_logs() {
    crate::logs::capture();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let console = sign_in(&app).await;
    let (mine, secret) = app
        .create_webhook("acct_logs", "https://example.com/logs", &["*"])
        .await;
    let link = mint(&app, "acct_logs").await;
    let entered = open_link(&app, &link).await;
    let portal = cookie_of(&entered);
    let (_, endpoint) = page(&app, &portal, &format!("/portal/endpoints/{mine}")).await;
    assert!(!endpoint.contains(&secret), "no secret without a reveal");
    let revealed = browser()
        .post(app.url(&format!("/portal/endpoints/{mine}/secret")))
        .header("cookie", &portal)
        .form(&[("_csrf", csrf_of(&endpoint))])
        .send()
        .await
        .expect("reveal");
    assert_eq!(revealed.status(), StatusCode::OK);
    assert_eq!(revealed.headers()["cache-control"], "no-store");
    assert!(revealed.text().await.unwrap_or_default().contains(&secret));
    let logs = crate::logs::captured();
    let token = link.split("token=").nth(1).expect("token");
    for (what, value) in [
        ("the operator key", OPERATOR_KEY),
        ("the link's token", token),
        (
            "the console cookie",
            console.split('=').nth(1).expect("value"),
        ),
        (
            "the portal cookie",
            portal.split('=').nth(1).expect("value"),
        ),
        ("the signing secret", secret.as_str()),
    ] {
        assert!(!logs.contains(value), "{what} reached the logs");
    }
    app.stop().await;
}

on_both!(
    revoking_an_account_ends_its_sessions_and_unopened_links,
    a_console_session_ends_when_its_key_is_no_longer_configured,
);

async fn revoking_an_account_ends_its_sessions_and_unopened_links(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let used = mint(&app, "acct_r").await;
    let portal = cookie_of(&open_link(&app, &used).await);
    let unopened = mint(&app, "acct_r").await;
    let other = mint(&app, "acct_other").await;
    let (status, body, headers) = app
        .operator(
            reqwest::Method::DELETE,
            "/api/v1/portal-sessions?accountId=acct_r",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], 1);
    assert!(headers.get("cache-control").is_none() || headers["cache-control"] != "public");
    assert_eq!(page(&app, &portal, "/portal").await.0, StatusCode::GONE);
    assert_eq!(open_link(&app, &unopened).await.status(), StatusCode::GONE);
    assert_eq!(
        open_link(&app, &other).await.status(),
        StatusCode::SEE_OTHER
    );
    let (status, _, _) = app
        .operator(
            reqwest::Method::DELETE,
            "/api/v1/portal-sessions?accountId=bad%20id",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The mint answer is a bearer link: never cached.
    let (_, _, headers) = app
        .operator(
            reqwest::Method::POST,
            "/api/v1/portal-sessions",
            Some(json!({"accountId": "acct_r"})),
        )
        .await;
    assert_eq!(headers["cache-control"], "no-store");
    app.stop().await;
}

async fn a_console_session_ends_when_its_key_is_no_longer_configured(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cookie = sign_in(&app).await;
    assert_eq!(page(&app, &cookie, "/console").await.0, StatusCode::OK);
    // A replica on the same database whose only key is another one.
    let rotated = TestApp::with(
        backend,
        Options {
            shared: Some((app.database_url.clone(), app.master_key.clone())),
            customize: Some(Box::new(|raw| {
                raw.set("management_api_keys", OPERATOR_KEY_OLD);
            })),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        page(&rotated, &cookie, "/console").await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(page(&app, &cookie, "/console").await.0, StatusCode::OK);
    rotated.stop().await;
    app.stop().await;
}

/// Forms work over HTTP/2, whose requests carry no `Host` header.
#[tokio::test]
async fn forms_work_over_http2() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = h2
        .post(app.url("/console/sign-in"))
        .header("origin", format!("http://{}", app.addr))
        .form(&[("key", OPERATOR_KEY)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cross = h2
        .post(app.url("/console/sign-in"))
        .header("origin", "http://evil.example")
        .form(&[("key", OPERATOR_KEY)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}
