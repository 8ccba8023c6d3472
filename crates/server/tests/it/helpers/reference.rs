//! The bridge to the reference Standard Webhooks verifier (Python), which
//! judges the signatures of recorded deliveries.

use super::Received;
use serde_json::Value;
use std::io::Write;

/// Verifies deliveries with the reference Standard Webhooks library (Python).
/// Returns one verdict per delivery: "ok" or "fail: …".
pub fn reference_verify(secret: &str, deliveries: &[Received]) -> Vec<String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/verify_standard_webhooks.py"
    );
    run_verifier(script, "secret", secret, deliveries)
}

/// Verifies `v1a` signatures with the `whpk_` public key alone, through
/// OpenSSL's Ed25519 (Python `cryptography`).
pub fn ed25519_verify(public_key: &str, deliveries: &[Received]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verify_v1a.py");
    run_verifier(script, "publicKey", public_key, deliveries)
}

/// Runs a verifier script over the deliveries: one verdict per delivery.
fn run_verifier(script: &str, key_field: &str, key: &str, deliveries: &[Received]) -> Vec<String> {
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be installed for the reference verifier");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        for d in deliveries {
            let headers: serde_json::Map<String, Value> =
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
                    .iter()
                    .map(|h| {
                        (
                            h.to_string(),
                            Value::String(
                                d.headers
                                    .get(*h)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned(),
                            ),
                        )
                    })
                    .collect();
            let line = serde_json::json!({key_field: key, "headers": headers, "body": String::from_utf8_lossy(&d.body)});
            writeln!(stdin, "{line}").expect("write");
        }
    }
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "verifier {script} failed (scripts/test installs what it needs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
