//! How an internal service verifies what hookwarden forwards to it: the
//! identity token against hookwarden's JWKS. Run it with
//! `cargo run --example verify_forwarded -- http://127.0.0.1:9090/.well-known/jwks.json <token> <your-integration-name>`.
//! (The body's `webhook-signature` is verified with the integration's
//! forwarding secret by any Standard Webhooks library.)

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, jwks_url, token, audience] = args.as_slice() else {
        anyhow::bail!("usage: verify_forwarded <jwks url> <token> <audience>");
    };
    let jwks: JwkSet = reqwest::get(jwks_url)
        .await?
        .error_for_status()?
        .json()
        .await?;
    let claims = verify(&jwks, token, audience)?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    Ok(())
}

/// EdDSA only, our issuer, our audience, not expired: anything else is refused.
fn verify(jwks: &JwkSet, token: &str, audience: &str) -> anyhow::Result<serde_json::Value> {
    let kid = decode_header(token)?
        .kid
        .ok_or_else(|| anyhow::anyhow!("token has no key id"))?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| anyhow::anyhow!("unknown key id {kid}"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["hookwarden"]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    Ok(decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
}
