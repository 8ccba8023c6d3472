//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256("v0:{ts}:{body}")>` with
//! `X-Slack-Request-Timestamp`, refused outside the tolerance window.

use super::{fresh, macs_once, matching_secret, required, Headers, InboundError, Verified};

pub(super) fn verify(
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<Verified, InboundError> {
    let ts_text = required(headers, "x-slack-request-timestamp")?;
    let ts: i64 = ts_text.parse().map_err(|_| InboundError::Malformed)?;
    let sig = required(headers, "x-slack-signature")?;
    let given = hex::decode(sig.strip_prefix("v0=").ok_or(InboundError::Malformed)?)
        .map_err(|_| InboundError::Malformed)?;
    let parts: [&[u8]; 4] = [b"v0:", ts_text.as_bytes(), b":", body];
    let index = matching_secret(&macs_once(secrets, &parts), &[given]);
    let Some(index) = index else {
        return Err(InboundError::Mismatch);
    };
    fresh(ts, now, tolerance)?;
    Ok(Verified {
        timestamp: Some(ts),
        secret_index: Some(index),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{verify as verify_any, Scheme};
    use super::*;

    #[test]
    fn slack_documented_example() {
        // Slack's documentation example (signing secret, timestamp, body, signature).
        let secret: [&[u8]; 1] = [b"8f742231b10e8888abcd99yyyzzz85a5"];
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = [
            ("X-Slack-Request-Timestamp", "1531420618"),
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ];
        assert!(verify_any(&Scheme::Slack, &secret, &h[..], body, 1531420618, 300).is_ok());
        assert_eq!(
            verify_any(&Scheme::Slack, &secret, &h[..], body, 1531420618 + 301, 300),
            Err(InboundError::Stale)
        );
        let h2 = [("X-Slack-Request-Timestamp", "1531420619"), h[1]];
        assert_eq!(
            verify_any(&Scheme::Slack, &secret, &h2[..], body, 1531420618, 300),
            Err(InboundError::Mismatch)
        );
    }
}
