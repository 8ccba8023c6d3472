//! The real `hookwarden` binary as an operator runs it: killed with SIGKILL
//! mid-delivery and restarted without losing an accepted event, and its logs
//! searched for anything secret.

mod common;

use base64::Engine;
use common::*;
use hookwarden_store::on_both;
use hookwarden_store::testing::{Backend, TestDb};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

on_both!(
    sigkill_mid_delivery_loses_no_accepted_event,
    logs_never_contain_secrets_or_payloads
);

async fn sigkill_mid_delivery_loses_no_accepted_event(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempdir();
    let env = Env::new(
        &db,
        &dir,
        &[
            ("HOOKWARDEN_MAX_IN_FLIGHT", "4"),
            ("HOOKWARDEN_DELIVERY_TIMEOUT", "1s"),
            ("HOOKWARDEN_DELIVERY_LEASE", "3s"),
            ("HOOKWARDEN_RETRY_SCHEDULE", "200ms,200ms,200ms"),
        ],
    );
    let (rport, seen) = receiver(Duration::from_millis(150)).await;
    let (mut server, client) =
        start_with_webhook(&env, "acct_k", &format!("http://127.0.0.1:{rport}/hook")).await;
    let producer = env.token(None, "events:publish");
    let mut accepted = HashSet::new();
    for n in 0..60 {
        let (status, body) = post(
            &client,
            server.url("/v1/events"),
            &producer,
            json!({"accountId": "acct_k", "eventType": "t", "payload": {"n": n}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        accepted.insert(body["eventId"].as_str().expect("id").to_owned());
    }
    // Kill while deliveries are in flight and most are still pending.
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").len() < 8 {
        assert!(Instant::now() < deadline, "no deliveries before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let before = seen.lock().expect("lock").len();
    assert!(before < 60, "the kill came mid-way ({before} delivered)");
    let mut server = env.start();
    server.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<String> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        if accepted.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted events delivered after restart",
            accepted.intersection(&got).count(),
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.terminate();
}

async fn logs_never_contain_secrets_or_payloads(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempdir();
    let mut env = Env::new(
        &db,
        &dir,
        &[
            ("HOOKWARDEN_LOG_FORMAT", "json"),
            ("HOOKWARDEN_MANAGEMENT_API_KEYS", "OPKEYSECRET42"),
        ],
    );
    env.vars.push((
        "RUST_LOG".into(),
        "trace,hyper=info,h2=info,rustls=info".into(),
    ));
    let (rport, seen) = receiver(Duration::ZERO).await;
    let mut server = env.start();
    server.wait_ready().await;
    let client = http_client();
    let tenant = env.token(Some("acct_l"), "webhooks:write webhooks:read");
    let secret = hookwarden_core::secret::WebhookSecret::generate()
        .expose()
        .to_string();
    let (status, created) = post(
        &client,
        server.url("/v1/webhooks"),
        &tenant,
        json!({"url": format!("http://127.0.0.1:{rport}/hook?token=URLTOKEN123"), "eventTypes": ["*"], "secret": secret}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let phone = "+15551234567";
    let (status, _) = post(
        &client,
        server.url("/v1/events"),
        &env.token(None, "events:publish"),
        json!({"accountId": "acct_l", "eventType": "sms.sent", "payload": {"to": phone, "body": "RAWBODYMARKER"}}),
    )
    .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A rotation and a bad secret (whose value must not be echoed) too.
    let id = created["id"].as_str().expect("id");
    let resp = client
        .put(server.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&tenant)
        .json(&json!({"rotateSecret": true}))
        .send()
        .await
        .expect("rotate");
    let rotated: Value = resp.json().await.expect("json");
    let (status, bad) = post(
        &client,
        server.url("/v1/webhooks"),
        &tenant,
        json!({"url": "https://example.com", "eventTypes": ["*"], "secret": "whsec_LEAKME!!"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!bad.to_string().contains("LEAKME"));
    // Inbound: an integration, a verified webhook and a forged one.
    let resp = client
        .post(server.url("/api/v1/integrations"))
        .header("x-internal-api-key", "OPKEYSECRET42")
        .json(&json!({"name": "acme", "scheme": "token", "secret": "PROVIDERTOKEN77", "signatureHeader": "x-acme-token",
            "targetUrl": format!("http://127.0.0.1:{rport}/internal")}))
        .send()
        .await
        .expect("integration");
    let integration: Value = resp.json().await.expect("json");
    let forwarding = integration["forwardingSecret"]
        .as_str()
        .expect("forwarding secret")
        .to_owned();
    for token in ["PROVIDERTOKEN77", "FORGEDTOKEN88"] {
        client
            .post(server.url("/api/v1/webhooks/acme"))
            .header("x-acme-token", token)
            .body("{\"note\":\"INBOUNDBODYMARKER\"}")
            .send()
            .await
            .expect("inbound");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.terminate();
    let logs = server.logs();
    assert!(
        logs.contains("inbound webhook accepted") && logs.contains("\"verification\":\"failed\""),
        "inbound requests are logged"
    );
    assert!(
        logs.contains("delivery try finished"),
        "the logs are captured: {}",
        &logs[..logs.len().min(2000)]
    );
    let body = &seen.lock().expect("lock")[0].1;
    assert!(body.contains(phone), "the receiver did get the payload");
    let master = env
        .vars
        .iter()
        .find(|(k, _)| k == "HOOKWARDEN_MASTER_KEY")
        .map(|(_, v)| v.clone())
        .expect("master");
    let jwt = env
        .vars
        .iter()
        .find(|(k, _)| k == "HOOKWARDEN_JWT_HS256_SECRET")
        .map(|(_, v)| v.clone())
        .expect("jwt");
    let forbidden = [
        secret["whsec_".len()..].to_owned(),
        rotated["secret"].as_str().expect("rotated")["whsec_".len()..].to_owned(),
        master,
        jwt,
        tenant.clone(),
        phone.to_owned(),
        "RAWBODYMARKER".to_owned(),
        "LEAKME".to_owned(),
        "URLTOKEN123".to_owned(),
        "OPKEYSECRET42".to_owned(),
        "PROVIDERTOKEN77".to_owned(),
        "FORGEDTOKEN88".to_owned(),
        "INBOUNDBODYMARKER".to_owned(),
        forwarding["whsec_".len()..].to_owned(),
    ];
    for needle in &forbidden {
        assert!(!logs.contains(needle.as_str()), "logs leaked {needle}");
    }
    assert!(!logs.contains("v1,"), "no signature in the logs");
}

/// Runs the binary to completion with the given arguments and environment.
fn run(args: &[&str], vars: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookwarden"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hookwarden");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn production_refuses_insecure_settings_with_a_clear_message() {
    let dir = tempdir();
    let data = dir.display().to_string();
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let base = [
        ("HOOKWARDEN_ENV", "production"),
        ("HOOKWARDEN_DATA_DIR", data.as_str()),
        ("HOOKWARDEN_LISTEN", "127.0.0.1:0"),
        ("HOOKWARDEN_OPS_LISTEN", "127.0.0.1:0"),
    ];
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("HOOKWARDEN_JWT_HS256_SECRET", "x")],
            "HOOKWARDEN_MASTER_KEY",
        ),
        (
            &[
                ("HOOKWARDEN_MASTER_KEY", &key),
                ("HOOKWARDEN_JWT_HS256_SECRET", "x"),
                ("HOOKWARDEN_ALLOWED_DESTINATIONS", "10.0.0.0/8"),
            ],
            "HOOKWARDEN_ALLOWED_DESTINATIONS",
        ),
        (
            &[
                ("HOOKWARDEN_MASTER_KEY", &key),
                ("HOOKWARDEN_JWT_HS256_SECRET", "x"),
                ("HOOKWARDEN_ALLOW_HTTP_DESTINATIONS", "true"),
            ],
            "http://",
        ),
        (&[("HOOKWARDEN_MASTER_KEY", &key)], "authentication"),
    ];
    for (extra, needle) in cases {
        let vars: Vec<(&str, &str)> = base.iter().chain(extra.iter()).copied().collect();
        let (ok, out) = run(&["serve"], &vars);
        assert!(!ok, "production must refuse: {out}");
        assert!(
            out.contains("refusing to start in production") && out.contains(needle),
            "{needle}: {out}"
        );
        assert!(!out.contains(&key), "the message does not echo the key");
    }
    assert!(
        !dir.join("master.key").exists(),
        "production never generates a key"
    );
}

#[test]
fn the_data_directory_and_database_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let data = dir.join("fresh").join("data");
    let data_text = data.display().to_string();
    let (ok, out) = run(&["migrate"], &[("HOOKWARDEN_DATA_DIR", data_text.as_str())]);
    assert!(ok, "{out}");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("hookwarden.db")), 0o600, "database file");
    for side in ["hookwarden.db-wal", "hookwarden.db-shm"] {
        if data.join(side).exists() {
            assert_eq!(mode(&data.join(side)) & 0o077, 0, "{side}");
        }
    }
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let dir = tempdir();
    let file = dir.join("hookwarden.toml");
    std::fs::write(
        &file,
        "retry_schedule = \"1s,2s\"\nmanagement_api_keys = \"OPKEY-ONE,OPKEY-TWO\"\n",
    )
    .expect("write");
    let data = dir.display().to_string();
    let vars = [
        ("HOOKWARDEN_DATA_DIR", data.as_str()),
        ("HOOKWARDEN_MAX_IN_FLIGHT", "8"),
        (
            "HOOKWARDEN_DATABASE_URL",
            "postgres://hook:DBPASSWORD@db.internal/app?sslmode=require",
        ),
        // base64 of 32 bytes of 0x9e: valid, and recognisable if printed.
        (
            "HOOKWARDEN_MASTER_KEY",
            "np6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp4=",
        ),
        // Not a setting: another tool's variable, ignored (a file's typo is not).
        ("HOOKWARDEN_NOT_A_SETTING", "1"),
    ];
    let (ok, out) = run(
        &["--config", &file.display().to_string(), "config", "check"],
        &vars,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("retry_schedule = \"1s,2s\""),
        "file value: {out}"
    );
    assert!(
        out.contains("max_in_flight = 8"),
        "environment overrides: {out}"
    );
    assert!(out.contains("configuration is valid"));
    for secret in ["DBPASSWORD", "np6enp6", "OPKEY-ONE", "OPKEY-TWO"] {
        assert!(!out.contains(secret), "{secret} printed: {out}");
    }
    // A typo in the file is an error, not a silent default.
    std::fs::write(&file, "retry_shedule = \"1s\"\n").expect("write");
    let (ok, out) = run(
        &["--config", &file.display().to_string(), "config", "check"],
        &vars,
    );
    assert!(!ok && out.contains("retry_shedule"), "{out}");
    // A bad value names its variable.
    let (ok, out) = run(
        &["config", "check"],
        &[
            ("HOOKWARDEN_DELIVERY_TIMEOUT", "soon"),
            ("HOOKWARDEN_DATA_DIR", data.as_str()),
        ],
    );
    assert!(!ok && out.contains("HOOKWARDEN_DELIVERY_TIMEOUT"), "{out}");
}

/// Development certificates from `hookwarden certs dev` in `dir/certs`.
fn dev_certs(dir: &std::path::Path) -> std::path::PathBuf {
    let certs = dir.join("certs");
    let (ok, out) = run(
        &["certs", "dev", "--out", &certs.display().to_string()],
        &[],
    );
    assert!(ok, "{out}");
    certs
}

/// Writes a file readable by its owner only.
fn private_file(path: &std::path::Path, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.display().to_string()
}

/// The line `config check` printed for `setting`.
fn finding<'a>(out: &'a str, setting: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(setting))
        .unwrap_or_else(|| panic!("no finding for {setting}: {out}"))
}

#[test]
fn config_check_loads_every_file_and_names_each_that_does_not() {
    let dir = tempdir();
    let certs = dev_certs(&dir);
    let cert = |name: &str| certs.join(name).display().to_string();
    let data = dir.display().to_string();
    let missing = dir.join("missing.pem").display().to_string();
    let garbage_jwks = dir.join("jwks.json");
    std::fs::write(&garbage_jwks, "{\"keys\": [{\"kty\": \"RSA\", \"n\": 12}]}").expect("write");
    let garbage_jwks = garbage_jwks.display().to_string();
    let bad_key = private_file(&dir.join("master.key.bad"), "THIS-IS-NOT-BASE64!!");
    let vars = [
        ("HOOKWARDEN_DATA_DIR", data.clone()),
        ("HOOKWARDEN_TLS_CERT_FILE", missing.clone()),
        ("HOOKWARDEN_TLS_KEY_FILE", cert("server-key.pem")),
        ("HOOKWARDEN_OPS_TLS_CERT_FILE", cert("server.pem")),
        ("HOOKWARDEN_OPS_TLS_KEY_FILE", cert("server-key.pem")),
        ("HOOKWARDEN_OPS_TLS_CLIENT_CA_FILE", cert("ca.pem")),
        ("HOOKWARDEN_OPS_TLS_CLIENT_AUTH", "required".into()),
        ("HOOKWARDEN_JWT_JWKS_FILE", garbage_jwks),
        ("HOOKWARDEN_MASTER_KEY_FILE", bad_key),
        ("HOOKWARDEN_DELIVERY_CA_FILE", cert("ca.pem")),
    ];
    let as_refs =
        |vars: &[(&'static str, String)]| -> Vec<(&'static str, String)> { vars.to_vec() };
    let run_check = |vars: &[(&'static str, String)]| {
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&["config", "check"], &refs)
    };
    let (ok, out) = run_check(&as_refs(&vars));
    assert!(!ok, "a file that does not load fails the check: {out}");
    for setting in [
        "HOOKWARDEN_TLS_CERT_FILE",
        "HOOKWARDEN_JWT_JWKS_FILE",
        "HOOKWARDEN_MASTER_KEY_FILE",
    ] {
        assert!(
            finding(&out, setting).starts_with("FAILED"),
            "{setting}: {out}"
        );
    }
    assert!(finding(&out, "HOOKWARDEN_TLS_CERT_FILE").contains(&missing));
    // The key and the field at fault, not serde's enum message.
    let jwks = finding(&out, "HOOKWARDEN_JWT_JWKS_FILE");
    assert!(
        jwks.contains("JWKS key 0: field `n` must be a string"),
        "{jwks}"
    );
    for setting in [
        "HOOKWARDEN_TLS_KEY_FILE",
        "HOOKWARDEN_OPS_TLS_CERT_FILE",
        "HOOKWARDEN_OPS_TLS_KEY_FILE",
        "HOOKWARDEN_OPS_TLS_CLIENT_CA_FILE",
        "HOOKWARDEN_DELIVERY_CA_FILE",
    ] {
        assert!(finding(&out, setting).starts_with("ok"), "{setting}: {out}");
    }
    assert!(
        out.contains("configuration check failed: 3 of 8 checks failed"),
        "{out}"
    );
    assert!(
        !out.contains("THIS-IS-NOT-BASE64"),
        "the key file's content is never printed"
    );

    // A key that is not its certificate's is refused at check, not at the first handshake.
    let mut mismatched = as_refs(&vars);
    mismatched[1] = ("HOOKWARDEN_TLS_CERT_FILE", cert("server.pem"));
    mismatched[2] = ("HOOKWARDEN_TLS_KEY_FILE", cert("client-key.pem"));
    let (ok, out) = run_check(&mismatched);
    assert!(!ok);
    let line = finding(&out, "HOOKWARDEN_TLS_KEY_FILE");
    assert!(
        line.starts_with("FAILED") && line.contains("not the key of the certificate"),
        "{out}"
    );

    // Every file as it should be: the check passes.
    let good_key = private_file(
        &dir.join("master.key.good"),
        "np6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp4=",
    );
    let jwks = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/tests/fixtures/jwks.json"
    );
    let mut good = as_refs(&vars);
    good[1] = ("HOOKWARDEN_TLS_CERT_FILE", cert("server.pem"));
    good[7] = ("HOOKWARDEN_JWT_JWKS_FILE", jwks.to_owned());
    good[8] = ("HOOKWARDEN_MASTER_KEY_FILE", good_key);
    let (ok, out) = run_check(&good);
    assert!(ok, "{out}");
    assert!(
        !out.contains("FAILED") && out.contains("configuration is valid"),
        "{out}"
    );
    assert!(!out.contains("np6enp6"), "the master key is never printed");
}

#[test]
fn serve_says_serving_only_once_its_tls_is_up() {
    let dir = tempdir();
    let data = dir.display().to_string();
    let garbage = dir.join("server.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let certs = dev_certs(&dir);
    let (ok, out) = run(
        &["serve"],
        &[
            ("HOOKWARDEN_DATA_DIR", &data),
            ("HOOKWARDEN_LISTEN", "127.0.0.1:0"),
            ("HOOKWARDEN_OPS_LISTEN", "127.0.0.1:0"),
            ("HOOKWARDEN_TLS_CERT_FILE", &garbage.display().to_string()),
            (
                "HOOKWARDEN_TLS_KEY_FILE",
                &certs.join("server-key.pem").display().to_string(),
            ),
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("HOOKWARDEN_TLS_") && out.contains("server.pem"),
        "{out}"
    );
    assert!(!out.contains("hookwarden serving"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_connect_reaches_each_backend_and_names_the_one_it_cannot() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempdir();
    let data = dir.display().to_string();
    let nats = std::env::var("HOOKWARDEN_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let redis = std::env::var("HOOKWARDEN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("hwcheck{}", uuid::Uuid::new_v4().simple());
    let stream = prefix.to_uppercase();
    let closed = free_port();
    let vars = |db_url: &str, nats_url: &str, redis_url: &str| {
        vec![
            ("HOOKWARDEN_DATA_DIR".to_owned(), data.clone()),
            ("HOOKWARDEN_DATABASE_URL".to_owned(), db_url.to_owned()),
            ("HOOKWARDEN_NATS_URL".to_owned(), nats_url.to_owned()),
            ("HOOKWARDEN_NATS_SUBJECT_PREFIX".to_owned(), prefix.clone()),
            ("HOOKWARDEN_NATS_STREAM".to_owned(), stream.clone()),
            ("HOOKWARDEN_REDIS_URL".to_owned(), redis_url.to_owned()),
        ]
    };
    let check = |vars: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&["config", "check", "--connect"], &refs)
    };
    let (ok, out) = check(vars(&db.url, &nats, &redis));
    assert!(ok, "{out}");
    for setting in [
        "HOOKWARDEN_DATABASE_URL",
        "HOOKWARDEN_NATS_URL",
        "HOOKWARDEN_REDIS_URL",
    ] {
        let line = finding(&out, setting);
        assert!(
            line.starts_with("ok") && line.contains("reached"),
            "{setting}: {out}"
        );
    }
    // Each backend on a port nothing listens on: that one fails, by name,
    // with its reason, and no credential of its URL is printed.
    let mut db_closed = url::Url::parse(&db.url).expect("url");
    db_closed.set_port(Some(closed)).expect("port");
    db_closed.set_password(Some("DBSECRET")).expect("password");
    let cases = [
        (
            "HOOKWARDEN_DATABASE_URL",
            vars(db_closed.as_str(), &nats, &redis),
        ),
        (
            "HOOKWARDEN_NATS_URL",
            vars(
                &db.url,
                &format!("nats://NATSTOKEN@127.0.0.1:{closed}"),
                &redis,
            ),
        ),
        (
            "HOOKWARDEN_REDIS_URL",
            vars(
                &db.url,
                &nats,
                &format!("redis://:REDISSECRET@127.0.0.1:{closed}"),
            ),
        ),
    ];
    for (failing, vars) in cases {
        let (ok, out) = check(vars);
        assert!(!ok, "{failing}: {out}");
        for setting in [
            "HOOKWARDEN_DATABASE_URL",
            "HOOKWARDEN_NATS_URL",
            "HOOKWARDEN_REDIS_URL",
        ] {
            let line = finding(&out, setting);
            if setting == failing {
                assert!(
                    line.starts_with("FAILED") && line.to_lowercase().contains("refused"),
                    "{setting}: {out}"
                );
            } else {
                assert!(line.starts_with("ok"), "{setting}: {out}");
            }
        }
        for secret in ["DBSECRET", "NATSTOKEN", "REDISSECRET"] {
            assert!(!out.contains(secret), "{secret} printed: {out}");
        }
    }
}

#[tokio::test]
async fn migrate_is_idempotent_on_postgres() {
    let db = TestDb::empty(Backend::Postgres).await;
    for _ in 0..2 {
        let (ok, out) = run(
            &["migrate"],
            &[("HOOKWARDEN_DATABASE_URL", db.url.as_str())],
        );
        assert!(ok && out.contains("migrations applied (postgres)"), "{out}");
    }
}

/// Runs the binary with `args`, feeding `stdin`: (success, stdout).
fn run_with_stdin(args: &[&str], stdin: &[u8]) -> (bool, String) {
    run_with_stdin_env(args, &[], stdin)
}

fn run_with_stdin_env(args: &[&str], vars: &[(&str, &str)], stdin: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_hookwarden"))
        .args(args)
        .envs(vars.iter().copied())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run hookwarden");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write");
    let out = c.wait_with_output().expect("output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn sign_and_verify_commands_agree() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    // The published Standard Webhooks vector.
    let env = [("HOOKWARDEN_WEBHOOK_SECRET", secret)];
    let (ok, out) = run_with_stdin_env(
        &[
            "sign",
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "--timestamp",
            "1614265330",
        ],
        &env,
        br#"{"test": 2432232314}"#,
    );
    assert!(
        ok && out.contains("webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        "{out}"
    );
    let now = chrono_now().to_string();
    // From a file as well.
    let dir = tempdir();
    let file = dir.join("secret");
    std::fs::write(&file, secret).expect("write");
    let (_, out) = run_with_stdin(
        &[
            "sign",
            "--secret-file",
            file.to_str().expect("path"),
            "--id",
            "m1",
            "--timestamp",
            &now,
        ],
        b"{}",
    );
    let sig = out
        .lines()
        .find_map(|l| l.strip_prefix("webhook-signature: "))
        .expect("signature")
        .to_owned();
    for (body, expect_ok) in [(&b"{}"[..], true), (&b"{ }"[..], false)] {
        let (ok, _) = run_with_stdin_env(
            &[
                "verify",
                "--id",
                "m1",
                "--timestamp",
                &now,
                "--signature",
                &sig,
            ],
            &env,
            body,
        );
        assert_eq!(
            ok,
            expect_ok,
            "verify over {:?}",
            String::from_utf8_lossy(body)
        );
    }
    // A secret on the command line (visible to every user in `ps`) is refused.
    let (ok, out) = run_with_stdin(&["sign", "--secret", secret, "--id", "m1"], b"{}");
    assert!(!ok && out.contains("--secret is refused"), "{out}");
    assert!(
        !out.contains(secret),
        "the refusal does not echo the secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxies_are_ignored() {
    // A "proxy" that records any connection: deliveries must never reach it.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    proxy.set_nonblocking(true).expect("nonblocking");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempdir();
    let mut env = Env::new(&db, &dir, &[]);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        env.vars.push((var.into(), proxy_url.clone()));
    }
    let (rport, seen) = receiver(Duration::ZERO).await;
    let (mut server, client) =
        start_with_webhook(&env, "acct_p", &format!("http://127.0.0.1:{rport}/hook")).await;
    let (status, _) = post(
        &client,
        server.url("/v1/events"),
        &env.token(None, "events:publish"),
        json!({"accountId": "acct_p", "eventType": "t", "payload": {}}),
    )
    .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no delivery: {}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        proxy.accept().is_err(),
        "the proxy from the environment was contacted"
    );
    server.terminate();
}

on_both!(audit_verify_finds_edits_and_removals_made_behind_the_service);

async fn tamper(backend: Backend, url: &str, sql: &str) {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
            // What an attacker with file access does: drop the guard, then edit.
            for t in ["audit_entries_no_update", "audit_entries_no_delete"] {
                sqlx::raw_sql(&format!("DROP TRIGGER IF EXISTS {t}"))
                    .execute(&mut c)
                    .await
                    .expect("drop trigger");
            }
            sqlx::raw_sql(sql).execute(&mut c).await.expect("tamper");
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
            let sql = format!("SET search_path = hook; ALTER TABLE audit_entries DISABLE TRIGGER USER; {sql}; ALTER TABLE audit_entries ENABLE TRIGGER USER;");
            sqlx::raw_sql(&sql).execute(&mut c).await.expect("tamper");
        }
    }
}

/// Text logs as read by a person: colour codes removed.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn audit_verify_finds_edits_and_removals_made_behind_the_service(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempdir();
    let mut env = Env::new(&db, &dir, &[]);
    env.vars.push((
        "HOOKWARDEN_MANAGEMENT_API_KEYS".into(),
        "op-key-for-audit".into(),
    ));
    let mut server = env.start();
    server.wait_ready().await;
    create_integrations(
        &server,
        "op-key-for-audit",
        &["alpha", "beta", "gamma", "delta"],
    )
    .await;
    server.terminate();
    // The head is logged from start-up on, as SEQ:HASH.
    let logs = strip_ansi(&server.logs.lock().expect("logs"));
    let logged = logs
        .split("audit.head=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a logged head");
    assert!(
        logged.parse::<hookwarden_core::audit::Head>().is_ok(),
        "{logged}"
    );
    let key = env.var("HOOKWARDEN_MASTER_KEY").expect("key").to_owned();
    let verify = |url: &str, extra: &[&str]| {
        let args: Vec<&str> = ["audit", "verify"]
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect();
        run(
            &args,
            &[
                ("HOOKWARDEN_DATABASE_URL", url),
                ("HOOKWARDEN_MASTER_KEY", key.as_str()),
            ],
        )
    };
    let (ok, out) = verify(&db.url, &[]);
    assert!(ok && out.contains("intact: 4 entries, 4 keyed"), "{out}");
    let head = out.lines().last().expect("head line").to_owned();
    assert!(head.starts_with("4:") && head.len() == 66, "{out}");
    let (ok, out) = verify(&db.url, &["--head", &head]);
    assert!(ok && out.contains("holds the recorded head"), "{out}");
    // Without the master key the keyed chain cannot be checked at all.
    let (ok, out) = run(
        &["audit", "verify"],
        &[
            ("HOOKWARDEN_DATABASE_URL", db.url.as_str()),
            (
                "HOOKWARDEN_MASTER_KEY",
                &base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
            ),
        ],
    );
    assert!(
        !ok && out.contains("audit chain key cannot be opened"),
        "{out}"
    );

    // The newest entries removed: the rest still holds together, but its
    // head is not the one recorded, and --head says so.
    tamper(backend, &db.url, "DELETE FROM audit_entries WHERE seq >= 3").await;
    let (ok, out) = verify(&db.url, &[]);
    assert!(ok && out.lines().last() != Some(head.as_str()), "{out}");
    assert!(
        out.lines().last().is_some_and(|l| l.starts_with("2:")),
        "{out}"
    );
    let (ok, out) = verify(&db.url, &["--head", &head]);
    assert!(
        !ok && out.contains("does not hold the recorded head 4"),
        "{out}"
    );

    // An edit is found.
    tamper(
        backend,
        &db.url,
        "UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 2",
    )
    .await;
    let (ok, out) = verify(&db.url, &[]);
    assert!(
        !ok && out.contains("entry 2") && out.contains("edited"),
        "{out}"
    );

    // A removal is found too (on a fresh copy of the chain).
    let db2 = TestDb::new(backend).await;
    let mut env2 = Env::new(&db2, &dir, &[]);
    env2.vars.push((
        "HOOKWARDEN_MANAGEMENT_API_KEYS".into(),
        "op-key-for-audit".into(),
    ));
    env2.vars
        .push(("HOOKWARDEN_MASTER_KEY".into(), key.clone()));
    let mut server = env2.start();
    server.wait_ready().await;
    create_integrations(&server, "op-key-for-audit", &["one", "two", "three"]).await;
    server.terminate();
    tamper(backend, &db2.url, "DELETE FROM audit_entries WHERE seq = 2").await;
    let (ok, out) = verify(&db2.url, &[]);
    assert!(
        !ok && out.contains("entry 3") && out.contains("removed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_in_the_config_file_are_applied_at_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempdir();
    let file = dir.join("hookwarden.toml");
    std::fs::write(
        &file,
        "[[integrations]]\nname = \"acme\"\nscheme = \"hmac-sha256\"\nsecret = \"FILESECRET\"\nsignatureHeader = \"x-acme-signature\"\n\
         targetUrl = \"http://127.0.0.1:9/acme\"\n",
    )
    .expect("write");
    let mut env = Env::new(&db, &dir, &[("HOOKWARDEN_MANAGEMENT_API_KEYS", "opk")]);
    env.vars
        .push(("HOOKWARDEN_CONFIG".into(), file.display().to_string()));
    let mut server = env.start();
    server.wait_ready().await;
    let client = http_client();
    let got: Value = client
        .get(server.url("/api/v1/integrations/acme"))
        .header("x-internal-api-key", "opk")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["scheme"], "hmac-sha256", "{got}");
    assert!(!got.to_string().contains("FILESECRET"));
    server.terminate();
    let (ok, out) = run(
        &["--config", &file.display().to_string(), "config", "check"],
        &[("HOOKWARDEN_DATA_DIR", &dir.display().to_string())],
    );
    assert!(
        ok && out.contains("integrations from the file: 1") && !out.contains("FILESECRET"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_dev_writes_a_working_mtls_setup() {
    let dir = tempdir();
    let certs = dir.join("certs");
    let (ok, out) = run(
        &["certs", "dev", "--out", &certs.display().to_string()],
        &[],
    );
    assert!(ok, "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["server-key.pem", "client-key.pem"] {
            let mode = std::fs::metadata(certs.join(key))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key} is private to its owner");
        }
    }
    let db = TestDb::new(Backend::Sqlite).await;
    let env = Env::new(
        &db,
        &dir,
        &[
            (
                "HOOKWARDEN_TLS_CERT_FILE",
                &certs.join("server.pem").display().to_string(),
            ),
            (
                "HOOKWARDEN_TLS_KEY_FILE",
                &certs.join("server-key.pem").display().to_string(),
            ),
            (
                "HOOKWARDEN_TLS_CLIENT_CA_FILE",
                &certs.join("ca.pem").display().to_string(),
            ),
            ("HOOKWARDEN_TLS_CLIENT_AUTH", "required"),
        ],
    );
    let _server = env.start();
    let read = |name: &str| std::fs::read(certs.join(name)).expect("pem");
    let identity = [read("client.pem"), read("client-key.pem")].concat();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).expect("ca"))
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .no_proxy()
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/api/v1/health", env.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            assert_eq!(resp.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dev certificates did not work"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reencrypts_and_explains_a_missing_old_key() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempdir();
    let env = Env::new(&db, &dir, &[]);
    let (mut server, _) = start_with_webhook(&env, "acct_r", "https://example.com/hook").await;
    server.terminate();
    let old = env
        .vars
        .iter()
        .find(|(k, _)| k == "HOOKWARDEN_MASTER_KEY")
        .map(|(_, v)| v.clone())
        .expect("key");
    let new = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let base = [
        ("HOOKWARDEN_DATABASE_URL", db.url.as_str()),
        ("HOOKWARDEN_MASTER_KEY", new.as_str()),
    ];
    let (ok, out) = run(&["keys", "rotate"], &base);
    assert!(
        !ok && out.contains("HOOKWARDEN_PREVIOUS_MASTER_KEYS"),
        "{out}"
    );
    assert!(
        !out.contains(&old) && !out.contains(&new),
        "no key in the output"
    );
    let with_old: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .chain([("HOOKWARDEN_PREVIOUS_MASTER_KEYS", old.as_str())])
        .collect();
    let (ok, out) = run(&["keys", "rotate", "--batch", "1"], &with_old);
    assert!(
        ok && out.contains("2 re-encrypted, 0 remaining"),
        "the webhook secret and the audit chain key: {out}"
    );
    let (ok, out) = run(&["keys", "rotate"], &base);
    assert!(ok && out.contains("0 re-encrypted, 0 remaining"), "{out}");
    // The old key gone, the audit trail still verifies: its key was re-sealed.
    let (ok, out) = run(&["audit", "verify"], &base);
    assert!(ok && out.contains("intact"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_nats_redis_survive_one_killed() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempdir();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let subject_prefix = format!("hwp{tag}.webhook");
    let stream = format!("HWP{}_WEBHOOK", tag.to_uppercase());
    let redis_prefix = format!("hwproc:{tag}:");
    let nats_url = std::env::var("HOOKWARDEN_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let redis_url = std::env::var("HOOKWARDEN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // Whatever happens below, the stream and the Redis keys go.
    let _cleanup = SharedBackends {
        nats_url: nats_url.clone(),
        stream: stream.clone(),
        redis_url: redis_url.clone(),
        redis_prefix: redis_prefix.clone(),
    };
    let nats = async_nats::connect(&nats_url)
        .await
        .unwrap_or_else(|e| panic!("NATS is needed at {nats_url}: {e}"));
    let shared = [
        ("HOOKWARDEN_NATS_URL", nats_url.as_str()),
        ("HOOKWARDEN_NATS_SUBJECT_PREFIX", subject_prefix.as_str()),
        ("HOOKWARDEN_NATS_STREAM", stream.as_str()),
        ("HOOKWARDEN_NATS_ACK_WAIT", "3s"),
        ("HOOKWARDEN_REDIS_URL", redis_url.as_str()),
        ("HOOKWARDEN_REDIS_PREFIX", redis_prefix.as_str()),
        ("HOOKWARDEN_DELIVERY_LEASE", "5s"),
        ("HOOKWARDEN_DELIVERY_TIMEOUT", "1s"),
        ("HOOKWARDEN_RETRY_SCHEDULE", "1s,1s,1s,1s"),
        ("HOOKWARDEN_MAX_IN_FLIGHT", "8"),
        ("HOOKWARDEN_API_RATE_LIMIT_PER_MINUTE", "60"),
        ("HOOKWARDEN_MANAGEMENT_API_KEYS", "opk-replicas"),
    ];
    let env_a = Env::new(&db, &dir, &shared);
    // Replica B: the same secrets and backends, its own ports.
    let mut env_b = Env::new(&db, &dir, &shared);
    for key in ["HOOKWARDEN_MASTER_KEY", "HOOKWARDEN_JWT_HS256_SECRET"] {
        let value = env_a
            .vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .expect("var");
        env_b.vars.retain(|(k, _)| k != key);
        env_b.vars.push((key.into(), value));
    }
    env_b.jwt = env_a.jwt.clone();
    let (rport, tally) = tallying_receiver(Duration::from_millis(5)).await;
    let (mut a, client) =
        start_with_webhook(&env_a, "acct_m", &format!("http://127.0.0.1:{rport}/hook")).await;
    let mut b = env_b.start();
    b.wait_ready().await;

    // The tenant limit is shared: 60 requests across both replicas, then 429 on either.
    let limited = env_a.token(Some("acct_limit"), "webhooks:read");
    for i in 0..60 {
        let server = if i % 2 == 0 { &a } else { &b };
        let resp = client
            .get(server.url("/v1/webhooks"))
            .bearer_auth(&limited)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "request {i}");
    }
    for server in [&a, &b] {
        let resp = client
            .get(server.url("/v1/webhooks"))
            .bearer_auth(&limited)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 429, "the 61st across replicas");
    }

    // Inbound deduplication holds across replicas: the same delivery to both.
    let resp = client
        .post(a.url("/api/v1/integrations"))
        .header("x-internal-api-key", "opk-replicas")
        .json(&json!({"name": "acme", "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": format!("http://127.0.0.1:{rport}/fwd")}))
        .send()
        .await
        .expect("integration");
    assert_eq!(resp.status(), 201);
    let mut answers = Vec::new();
    for server in [&a, &b, &a, &b] {
        let resp = client
            .post(server.url("/api/v1/webhooks/acme"))
            .header("x-t", "t")
            .header("content-type", "application/json")
            .body("{\"same\":1}")
            .send()
            .await
            .expect("inbound");
        answers.push(resp.status().as_u16());
    }
    answers.sort();
    assert_eq!(
        answers,
        [200, 200, 200, 202],
        "one new event, three duplicates, across replicas"
    );

    // 2,000 events: 1,600 over NATS (shared durable consumer), 400 over HTTP to both.
    let mut accepted = std::collections::HashSet::new();
    let js = async_nats::jetstream::new(nats.clone());
    let subject = format!("{subject_prefix}.dispatch");
    for n in 0..1600 {
        let id = format!("evt_m_{n}");
        let msg = json!({"accountId": "acct_m", "eventType": "t", "payload": {"n": n, "ref": id}, "id": id});
        js.publish(subject.clone(), msg.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        accepted.insert(id);
    }
    let producer = env_a.token(None, "events:publish");
    for n in 0..400 {
        let server = if n % 2 == 0 { &a } else { &b };
        let (status, body) = post(
            &client,
            server.url("/v1/events"),
            &producer,
            json!({"accountId": "acct_m", "eventType": "t", "payload": {"h": n}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        accepted.insert(body["eventId"].as_str().expect("id").to_owned());
    }
    // Kill replica A mid-run, holding claims and unacked messages.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.lock().expect("lock").received.len() < 200 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    let delivered_at_kill = tally.lock().expect("lock").received.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: std::collections::HashSet<String> = tally
            .lock()
            .expect("lock")
            .received
            .keys()
            .cloned()
            .collect();
        if accepted.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted events delivered after the kill (at the kill: {delivered_at_kill}): {}",
            accepted.intersection(&got).count(),
            accepted.len(),
            b.logs().lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let t = tally.lock().expect("lock");
        assert_eq!(
            t.max_in_flight_one_id, 1,
            "no event was ever being delivered twice at once"
        );
        let repeats: usize = t.received.values().map(|n| n - 1).sum();
        eprintln!("delivered {} events; {} repeated after the crash (at-least-once); {} delivered before the kill", t.received.len(), repeats, delivered_at_kill);
        assert!(
            repeats <= 16,
            "only tries in flight or waiting to be recorded at the kill (at most twice the budget of 8) may repeat: {repeats}"
        );
    }
    // Graceful shutdown of the survivor within a bound.
    let started = Instant::now();
    b.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "SIGTERM drained within the bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_service_role() {
    use sqlx::Connection;
    // The deploy/postgres files, applied to a fresh database with roles of this test's own.
    let db = TestDb::empty(Backend::Postgres).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (owner, svc) = (format!("hook_owner_{tag}"), format!("hook_svc_{tag}"));
    let dbname = db.url.rsplit('/').next().expect("db name").to_owned();
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("admin");
    let roles = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/postgres/roles.sql"
    ))
    .expect("roles.sql");
    let grants = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/postgres/grants.sql"
    ))
    .expect("grants.sql");
    let subst = |sql: &str| {
        sql.replace("hook_owner", &owner)
            .replace("hook_svc", &svc)
            .replace(":'owner_password'", "'owner-pw'")
            .replace(":'svc_password'", "'svc-pw'")
            .replace(":\"dbname\"", &dbname)
    };
    sqlx::raw_sql(&subst(&roles))
        .execute(&mut admin)
        .await
        .expect("roles.sql");
    let mut url = url::Url::parse(&db.url).expect("url");
    url.set_username(&owner).expect("user");
    url.set_password(Some("owner-pw")).expect("pw");
    let owner_url = url.to_string();
    url.set_username(&svc).expect("user");
    url.set_password(Some("svc-pw")).expect("pw");
    let svc_url = url.to_string();
    let (ok, out) = run(
        &["migrate"],
        &[("HOOKWARDEN_DATABASE_URL", owner_url.as_str())],
    );
    assert!(ok, "migrate as the owner: {out}");
    let mut as_owner = sqlx::PgConnection::connect(&owner_url)
        .await
        .expect("owner");
    sqlx::raw_sql(&subst(&grants))
        .execute(&mut as_owner)
        .await
        .expect("grants.sql");

    // The service runs as hook_svc and works.
    let dir = tempdir();
    let mut env = Env::new(&db, &dir, &[("HOOKWARDEN_RUN_MIGRATIONS", "false")]);
    env.vars.retain(|(k, _)| k != "HOOKWARDEN_DATABASE_URL");
    env.vars
        .push(("HOOKWARDEN_DATABASE_URL".into(), svc_url.clone()));
    let (mut server, client) =
        start_with_webhook(&env, "acct_lp", "https://example.com/hook").await;
    let (status, _) = post(
        &client,
        server.url("/v1/events"),
        &env.token(None, "events:publish"),
        json!({"accountId": "acct_lp", "eventType": "t", "payload": {}}),
    )
    .await;
    assert_eq!(status, 202);
    server.terminate();

    // The claim path's functions run as the service role (the worker
    // above may already hold the one attempt, so only success is checked).
    let mut as_svc = sqlx::PgConnection::connect(&svc_url).await.expect("svc");
    for sql in [
        "SELECT count(*) FROM hook.claim_attempts(now() + interval '30 seconds', 'w-lp', now(), '{}', 10)",
        "SELECT count(*) FROM hook.claim_jobs(now() + interval '30 seconds', 'w-lp', now(), '{}', 10)",
        "SELECT count(*) FROM hook.claim_attempts(now() + interval '30 seconds', 'w-lp', now(), '{}', 10, now())",
        "SELECT count(*) FROM hook.claim_jobs(now() + interval '30 seconds', 'w-lp', now(), '{}', 10, NULL)",
        "SELECT hook.release_attempts('{}', 'w-lp')",
        "SELECT count(*) FROM hook.complete_attempts('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')",
        "SELECT hook.pause_webhook('wh_none', now() + interval '5 seconds')",
        // The owner's rights (ANALYZE), through the one function that has them.
        "SELECT count(*) FROM hook.refresh_stale_statistics()",
    ] {
        if let Err(e) = sqlx::raw_sql(sql).execute(&mut as_svc).await {
            panic!("the service role must be able to run {sql}: {e}");
        }
    }
    // And it can do nothing else.
    for sql in [
        "CREATE TABLE hook.evil (x int)",
        "CREATE TABLE public.evil (x int)",
        "DROP TABLE hook.audit_entries",
        "ALTER TABLE hook.delivery_attempts DISABLE TRIGGER USER",
        "DELETE FROM hook.delivery_attempts",
        "CREATE SCHEMA evil",
    ] {
        assert!(
            sqlx::raw_sql(sql).execute(&mut as_svc).await.is_err(),
            "the service role must not: {sql}"
        );
    }
    // The owner's function cannot be led astray by the caller's temporary
    // objects: its search path puts pg_catalog first. Every table of the
    // schema analyzed while empty (0 pages, 0 rows): a shadow of the live
    // count, were it called, would make them all look stale.
    sqlx::raw_sql("ANALYZE")
        .execute(&mut as_owner)
        .await
        .expect("analyze as the owner");
    sqlx::raw_sql(
        "CREATE FUNCTION pg_temp.pg_stat_get_live_tuples(oid) RETURNS bigint \
           LANGUAGE sql AS 'SELECT 1000000::bigint'; \
         CREATE TEMP VIEW pg_class AS SELECT * FROM pg_catalog.pg_class; \
         CREATE TEMP TABLE pg_namespace (nspname name)",
    )
    .execute(&mut as_svc)
    .await
    .expect("the service role may make temporary objects (PUBLIC's TEMP right)");
    let analyzed: Vec<String> = sqlx::query_scalar("SELECT hook.refresh_stale_statistics()")
        .fetch_all(&mut as_svc)
        .await
        .expect("check with shadows in place");
    assert!(
        analyzed.is_empty(),
        "the caller's temporary objects were used: {analyzed:?}"
    );
    // A role granted the schema but not the function may not call it
    // (REVOKE … FROM PUBLIC): ANALYZE is the owner's right, lent only to
    // the service role.
    let stranger = format!("hook_stranger_{tag}");
    sqlx::raw_sql(&format!(
        "CREATE ROLE {stranger} LOGIN PASSWORD 'stranger-pw'; GRANT USAGE ON SCHEMA hook TO {stranger}"
    ))
    .execute(&mut admin)
    .await
    .expect("stranger role");
    url.set_username(&stranger).expect("user");
    url.set_password(Some("stranger-pw")).expect("pw");
    let mut as_stranger = sqlx::PgConnection::connect(url.as_str())
        .await
        .expect("stranger");
    let refused = sqlx::raw_sql("SELECT hook.refresh_stale_statistics()")
        .execute(&mut as_stranger)
        .await
        .expect_err("a role without EXECUTE must be refused");
    assert!(
        refused
            .to_string()
            .contains("permission denied for function"),
        "{refused}"
    );
    drop(as_stranger);
    drop(as_svc);
    drop(as_owner);
    // Leave nothing behind: the database goes with `db`; the roles go here.
    let _ = sqlx::raw_sql(&format!(
        "DROP OWNED BY {stranger}; DROP OWNED BY {svc}; DROP OWNED BY {owner};"
    ))
    .execute(&mut admin)
    .await;
    drop(admin);
    drop(db);
    if let Ok(mut c) =
        sqlx::PgConnection::connect(&hookwarden_store::testing::postgres_admin_url()).await
    {
        let _ = sqlx::raw_sql(&format!(
            "DROP ROLE IF EXISTS {stranger}; DROP ROLE IF EXISTS {svc}; DROP ROLE IF EXISTS {owner};"
        ))
        .execute(&mut c)
        .await;
    }
}

/// Text logs through a pipe carry no colour codes; and when whoever read
/// them goes away (both pipes closed), `serve` keeps answering and still
/// stops on SIGTERM. It used to panic in every task that logged: requests
/// went unanswered and the signal task died before cancelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_output_pipes_neither_stop_serving_nor_shutdown() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempdir();
    let env = Env::new(&db, &dir, &[("HOOKWARDEN_LOG_FORMAT", "text")]);
    let mut child = env.command().spawn().expect("start hookwarden");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut server = Server {
        child,
        logs: Default::default(),
        port: env.port,
    };
    // Read up to the start-up line, as a log collector would.
    let first_lines = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, BufReader};
        let mut reader = BufReader::new(stdout);
        let mut seen = String::new();
        while !seen.contains("serving") {
            if reader.read_line(&mut seen).expect("read") == 0 {
                break;
            }
        }
        // Dropping the reader closes the pipe's read end.
        seen
    });
    let first_lines = tokio::time::timeout(Duration::from_secs(30), first_lines)
        .await
        .expect("start-up line within 30 s")
        .expect("reader");
    assert!(first_lines.contains("serving"), "{first_lines}");
    assert!(
        !first_lines.contains("\x1b["),
        "colour codes in a pipe: {first_lines:?}"
    );
    drop(stderr);
    server.wait_ready().await;

    let client = http_client();
    let tenant = env.token(Some("acct_pipe"), "webhooks:write webhooks:read");
    let producer = env.token(None, "events:publish");
    let (rport, seen) = receiver(Duration::ZERO).await;
    let (status, body) = post(
        &client,
        server.url("/v1/webhooks"),
        &tenant,
        json!({"url": format!("http://127.0.0.1:{rport}/hook"), "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Each request, try and worker tick logs a line into the closed pipe.
    for n in 0..20 {
        let (status, body) = post(
            &client,
            server.url("/v1/events"),
            &producer,
            json!({"accountId": "acct_pipe", "eventType": "t", "payload": {"n": n}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let resp = client
            .get(server.url("/v1/webhooks"))
            .bearer_auth(&tenant)
            .send()
            .await
            .expect("list answered");
        assert_eq!(resp.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").len() < 20 {
        assert!(Instant::now() < deadline, "deliveries stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop serve within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

/// `hookwarden token` signs only with a secret the server verifies with: it
/// never creates one (the server would refuse its tokens), and in production
/// it never uses the generated development secret.
#[tokio::test]
async fn token_signs_only_with_the_secret_the_server_uses() {
    let dir = tempdir();
    let data = dir.join("data");
    let data_text = data.display().to_string();
    let dev = [("HOOKWARDEN_DATA_DIR", data_text.as_str())];
    let secret_file = data.join("jwt-hs256.secret");

    // Before the server ever ran there is no secret to sign with: refused,
    // with the two ways out, and nothing created.
    let (ok, out) = run(&["token", "--account", "acct_t"], &dev);
    assert!(!ok, "no secret yet, yet a token was minted: {out}");
    assert!(
        out.contains("hookwarden serve") && out.contains("HOOKWARDEN_JWT_HS256_SECRET"),
        "{out}"
    );
    assert!(!secret_file.exists(), "token never creates a secret");

    // Once `serve` has generated its development secret, tokens minted by
    // the command are the server's own.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut env = Env::new(&db, &data, &[]);
    env.vars.retain(|(k, _)| k != "HOOKWARDEN_JWT_HS256_SECRET");
    let mut server = env.start();
    server.wait_ready().await;
    assert!(
        secret_file.exists(),
        "serve generated the development secret"
    );
    let (ok, out) = run(
        &["token", "--account", "acct_t", "--scope", "webhooks:read"],
        &dev,
    );
    assert!(ok, "{out}");
    let token = out.lines().next().expect("a token").trim().to_owned();
    let status = http_client()
        .get(server.url("/v1/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 200, "the server accepts the minted token");
    server.terminate();

    // Production: the development secret in the data directory is never used.
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).expect("jwks");
    let jwks_text = jwks.display().to_string();
    let prod = [
        ("HOOKWARDEN_ENV", "production"),
        ("HOOKWARDEN_DATA_DIR", data_text.as_str()),
        ("HOOKWARDEN_MASTER_KEY", key.as_str()),
        ("HOOKWARDEN_JWT_JWKS_FILE", jwks_text.as_str()),
        ("HOOKWARDEN_JWT_ISSUER", "https://auth.example"),
        ("HOOKWARDEN_JWT_AUDIENCE", "hookwarden"),
    ];
    let (ok, out) = run(&["token", "--account", "acct_t"], &prod);
    assert!(!ok, "production minted with the development secret: {out}");
    assert!(
        out.contains("production") && out.contains("HOOKWARDEN_JWT_HS256_SECRET"),
        "{out}"
    );
    let dev_secret = std::fs::read_to_string(&secret_file).expect("secret");
    assert!(!out.contains(dev_secret.trim()), "never echoes the secret");
    // Development with only a JWKS file: the server has no HS256 key either.
    let jwks_only = [
        ("HOOKWARDEN_DATA_DIR", data_text.as_str()),
        ("HOOKWARDEN_JWT_JWKS_FILE", jwks_text.as_str()),
    ];
    let (ok, out) = run(&["token", "--account", "acct_t"], &jwks_only);
    assert!(!ok, "{out}");
    assert!(out.contains("HOOKWARDEN_JWT_JWKS_FILE"), "{out}");
}
