//! Standard Webhooks as an inbound scheme: the secrets are `whsec_…` strings.

use super::{required, Headers, InboundError, Verified};
use crate::secret::WebhookSecret;
use crate::standard_webhooks::{self, VerifyError};

pub(super) fn verify(
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<Verified, InboundError> {
    let id = required(headers, "webhook-id")?;
    let ts = required(headers, "webhook-timestamp")?;
    let sig = required(headers, "webhook-signature")?;
    // The index reported is the one in the configured list, whatever was skipped.
    let (places, parsed): (Vec<usize>, Vec<WebhookSecret>) = secrets
        .iter()
        .enumerate()
        .filter_map(|(i, s)| WebhookSecret::from_stored(s).ok().map(|s| (i, s)))
        .unzip();
    let refs: Vec<&WebhookSecret> = parsed.iter().collect();
    match standard_webhooks::verify_which(&refs, id, ts, sig, body, now, tolerance) {
        Ok(index) => Ok(Verified {
            timestamp: ts.parse().ok(),
            secret_index: places.get(index).copied(),
        }),
        Err(VerifyError::Timestamp) => Err(InboundError::Stale),
        Err(VerifyError::Malformed) => Err(InboundError::Malformed),
        Err(VerifyError::NoMatch) => Err(InboundError::Mismatch),
    }
}
