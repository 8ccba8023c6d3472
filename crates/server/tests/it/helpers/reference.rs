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
            let line = serde_json::json!({"secret": secret, "headers": headers, "body": String::from_utf8_lossy(&d.body)});
            writeln!(stdin, "{line}").expect("write");
        }
    }
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "reference verifier failed (is `standardwebhooks` installed? pip install standardwebhooks): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
