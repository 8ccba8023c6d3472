//! Production token verification from a JWKS file: RS256, ES256 and EdDSA
//! accepted; other keys, algorithm confusion, wrong issuer or audience refused.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_server::auth::jwt::Claims;
use hookwarden_store::on_both;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::Value;

on_both!(
    jwks_tokens_of_each_algorithm,
    forged_and_confused_tokens_are_refused
);

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Claims) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).expect("sign")
}

async fn app(backend: Backend) -> TestApp {
    TestApp::with(
        backend,
        Options {
            jwks_file: Some(fixture("jwks.json")),
            hs256: false,
            issuer: Some("https://idp.example"),
            audience: Some("hookwarden"),
            ..Default::default()
        },
    )
    .await
}

fn claims(app: &TestApp) -> Claims {
    Claims {
        iss: Some("https://idp.example".into()),
        aud: Some("hookwarden".into()),
        ..app.claims(Some("acct_a"), "webhooks:read")
    }
}

async fn jwks_tokens_of_each_algorithm(backend: Backend) {
    let app = app(backend).await;
    let c = claims(&app);
    let rsa = EncodingKey::from_rsa_pem(&pem("jwt-rsa.pem")).expect("rsa");
    let ec = EncodingKey::from_ec_pem(&pem("jwt-ec.pem")).expect("ec");
    let ed = EncodingKey::from_ed_pem(&pem("jwt-ed25519.pem")).expect("ed");
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", &rsa),
        (Algorithm::ES256, "ec-1", &ec),
        (Algorithm::EdDSA, "ed-1", &ed),
    ] {
        let (status, body, _) = app.get("/v1/webhooks", &token(alg, kid, key, &c)).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}: {body}");
    }
}

async fn forged_and_confused_tokens_are_refused(backend: Backend) {
    let app = app(backend).await;
    let c = claims(&app);
    let attacker = EncodingKey::from_rsa_pem(&pem("jwt-rsa-attacker.pem")).expect("rsa");
    // The attacker claims our key id.
    let forged = token(Algorithm::RS256, "rsa-1", &attacker, &c);
    // Algorithm confusion: HS256 "signed" with the public key material from the JWKS.
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).expect("jwks"))
            .expect("json");
    let public_n = jwks["keys"][0]["n"]
        .as_str()
        .expect("n")
        .as_bytes()
        .to_vec();
    let confused = token(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(&public_n),
        &c,
    );
    let rsa = EncodingKey::from_rsa_pem(&pem("jwt-rsa.pem")).expect("rsa");
    // An RSA key used under an EC key id.
    let wrong_kid = token(Algorithm::RS256, "ec-1", &rsa, &c);
    let wrong_iss = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            iss: Some("https://evil.example".into()),
            ..c.clone()
        },
    );
    let wrong_aud = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            aud: Some("another-service".into()),
            ..c.clone()
        },
    );
    let no_aud = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            aud: None,
            ..c.clone()
        },
    );
    let no_iss = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            iss: None,
            ..c.clone()
        },
    );
    // Development HS256 tokens are not accepted when no HS256 secret is configured.
    let dev = app.tenant("acct_a");
    for (name, t) in [
        ("forged", forged),
        ("alg confusion", confused),
        ("wrong kid", wrong_kid),
        ("wrong issuer", wrong_iss),
        ("wrong audience", wrong_aud),
        ("no audience", no_aud),
        ("no issuer", no_iss),
        ("hs256 dev token", dev),
    ] {
        let (status, body, _) = app.get("/v1/webhooks", &t).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
    }
}
