//! A request body's deadline: the whole body must have arrived within
//! `BODY_DEADLINE` of its first read, whoever reads it (the
//! receive route, a JSON or form extractor, the console's form check), so a
//! client that sends a body a byte at a time cannot hold a connection, a
//! task and the part of the body read so far for as long as it likes.

use crate::shared::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long a request's whole body may take to arrive. A provider's or a
/// producer's 1 MiB takes milliseconds; 30 s leaves room for a slow link.
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// The reading of a body stopped at its deadline (the error its readers see).
#[derive(Debug)]
pub struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within its deadline")
    }
}

impl std::error::Error for TooSlow {}

pub async fn layer(req: Request, next: Next) -> Response {
    next.run(req.map(|inner| {
        Body::new(Deadline {
            inner,
            deadline: None,
            timer: None,
        })
    }))
    .await
}

/// What a body that could not be read is answered: over its deadline, 400
/// (the connection closed); otherwise, as before, 413 (over the size limit,
/// or cut off, which nobody hears).
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> ApiError {
    if std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<TooSlow>()) {
        ApiError::BodyTooSlow
    } else {
        ApiError::PayloadTooLarge
    }
}

struct Deadline {
    inner: Body,
    /// From the first read: a handler that took its time before reading
    /// (a stalled database behind a lookup, say) does not spend the
    /// client's.
    deadline: Option<Instant>,
    /// Made only once the body keeps its reader waiting: most bodies come
    /// with their request's head and never need one.
    timer: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let deadline = *this
            .deadline
            .get_or_insert_with(|| Instant::now() + BODY_DEADLINE);
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(TooSlow)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
