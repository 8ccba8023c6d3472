//! Master key rotation online: every secret re-encrypted while deliveries run,
//! and every secret still working afterwards under the new key alone.

use crate::helpers::*;
use axum::http::StatusCode;
use base64::Engine;
use hookwarden_server::shared::rotate::rotate_all;
use hookwarden_store::on_both;
use serde_json::json;
use std::time::Duration;

on_both!(rotation_while_delivering_keeps_every_secret_working);

const WAIT: Duration = Duration::from_secs(30);

async fn rotation_while_delivering_keeps_every_secret_working(backend: Backend) {
    // The first deployment (its worker off) writes everything under the old key.
    let first = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    let mut hooks = Vec::new();
    for account in ["acct_1", "acct_2", "acct_3"] {
        let (id, secret) = first
            .create_webhook(account, &rx.url(&format!("/{account}")), &["*"])
            .await;
        hooks.push((account, id, secret));
    }
    // One webhook mid-rotation of its own: both its secrets are sealed.
    let (_, rotated, _) = first
        .put(
            &format!("/v1/webhooks/{}", hooks[0].1),
            &first.tenant("acct_1"),
            json!({"rotateSecret": true}),
        )
        .await;
    let acct1_new = rotated["secret"].as_str().expect("new secret").to_owned();
    let forwarding = first
        .integration(json!({"name": "acme", "scheme": "token", "secret": "provider-token", "signatureHeader": "x-t", "targetUrl": rx.url("/fwd")}))
        .await;
    let new_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());

    // The new deployment: new key current, old key still readable, delivering.
    let during = TestApp::with(
        backend,
        Options {
            worker: true,
            shared: Some((first.database_url.clone(), new_key.clone())),
            previous_keys: Some(first.master_key.clone()),
            ..Default::default()
        },
    )
    .await;
    for n in 0..30 {
        during.publish(hooks[n % 3].0, "t", json!({"n": n})).await;
    }
    let report = rotate_all(
        during.state.store.as_ref(),
        &during.state.keyring,
        2,
        |_, _| {},
    )
    .await
    .expect("rotation");
    assert_eq!(report.remaining, 0, "{report:?}");
    assert_eq!(
        report.resealed, 7,
        "3 webhook secrets, 1 previous secret, 2 integration secrets, the audit chain key"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.count() < 30 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 30 delivered during the rotation",
            rx.count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    during.stop().await;
    for (account, _, secret) in &hooks {
        let got: Vec<Received> = rx
            .received()
            .into_iter()
            .filter(|r| r.path == format!("/{account}"))
            .collect();
        assert_eq!(got.len(), 10);
        assert_eq!(
            reference_verify(secret, &got),
            vec!["ok"; 10],
            "{account}: signatures during the rotation"
        );
    }
    let acct1: Vec<Received> = rx
        .received()
        .into_iter()
        .filter(|r| r.path == "/acct_1")
        .collect();
    assert_eq!(
        reference_verify(&acct1_new, &acct1),
        vec!["ok"; 10],
        "the webhook's own rotation grace survives"
    );

    // The old key is gone: a deployment with the new key alone still opens everything.
    let after = TestApp::with(
        backend,
        Options {
            shared: Some((first.database_url.clone(), new_key.clone())),
            ..Default::default()
        },
    )
    .await;
    after.publish("acct_2", "t", json!({"after": true})).await;
    after.deliver_until(WAIT, || rx.count() == 31).await;
    let last = rx.received().into_iter().last().expect("delivery");
    assert_eq!(reference_verify(&hooks[1].2, &[last]), ["ok"]);
    let (status, _) = after
        .inbound("acme", &[("x-t", "provider-token".into())], b"{\"k\":1}")
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the provider secret opens under the new key"
    );
    after
        .forward_until(WAIT, || rx.received().iter().any(|r| r.path == "/fwd"))
        .await;
    let forwarded: Vec<Received> = rx
        .received()
        .into_iter()
        .filter(|r| r.path == "/fwd")
        .collect();
    assert_eq!(
        reference_verify(&forwarding, &forwarded),
        ["ok"],
        "the forwarding secret opens under the new key"
    );
    // The audit trail, keyed under the first deployment, still verifies
    // under the new key alone, and new entries still chain onto it.
    let store = after.state.store.as_ref();
    let before = hookwarden_server::shared::audit::verify(store, &after.state.keyring, None)
        .await
        .expect("the chain key opens under the new master key")
        .expect("the trail is intact after the rotation");
    assert!(
        before.entries > 0 && before.keyed == before.entries,
        "{before:?}"
    );
    hookwarden_server::shared::audit::record(
        after.state.store.as_ref(),
        "test",
        "keys.rotated",
        "master_key:new",
        "req-rot",
        json!({}),
    )
    .await;
    let now =
        hookwarden_server::shared::audit::verify(store, &after.state.keyring, Some(&before.head))
            .await
            .expect("verify")
            .expect("the new entry chains onto the rotated trail");
    assert_eq!(
        (now.entries, now.keyed),
        (before.entries + 1, before.entries + 1)
    );
    // Running it again is a no-op.
    let again = rotate_all(
        after.state.store.as_ref(),
        &after.state.keyring,
        2,
        |_, _| {},
    )
    .await
    .expect("rotation");
    assert_eq!((again.resealed, again.remaining), (0, 0));
}
