//! `Receiver`: a real HTTP server standing in for a customer's endpoint,
//! recording what it is sent and answering as a test tells it.

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    Slow {
        delay: Duration,
        status: u16,
    },
    /// A body of this many bytes, streamed.
    Huge(usize),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub path: String,
    /// When it arrived (a test polling for it may look much later).
    pub at: std::time::Instant,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
    /// Requests being answered now, and the most ever at once.
    concurrent: Arc<Mutex<(usize, usize)>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let this = Self {
            addr,
            received: Arc::default(),
            replies: Arc::default(),
            default: Arc::new(Mutex::new(Reply::Status(200))),
            concurrent: Arc::default(),
        };
        let state = this.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.answer(uri.path().to_owned(), headers, body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        this
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn push(&self, reply: Reply) {
        self.replies.lock().expect("lock").push_back(reply);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.default.lock().expect("lock") = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }

    /// The most requests this receiver was ever answering at once.
    pub fn max_concurrent(&self) -> usize {
        self.concurrent.lock().expect("lock").1
    }

    async fn answer(&self, path: String, headers: HeaderMap, body: Bytes) -> Response {
        {
            let mut c = self.concurrent.lock().expect("lock");
            c.0 += 1;
            c.1 = c.1.max(c.0);
        }
        let resp = self.reply(path, headers, body).await;
        self.concurrent.lock().expect("lock").0 -= 1;
        resp
    }

    async fn reply(&self, path: String, headers: HeaderMap, body: Bytes) -> Response {
        self.received.lock().expect("lock").push(Received {
            headers,
            body,
            path,
            at: std::time::Instant::now(),
        });
        let reply = self
            .replies
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| self.default.lock().expect("lock").clone());
        let build = |status: u16, body: Body| {
            Response::builder()
                .status(status)
                .body(body)
                .expect("response")
        };
        match reply {
            Reply::Status(s) => build(s, Body::from("ok")),
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut r = build(status, Body::from(body));
                for (k, v) in headers {
                    r.headers_mut().insert(k, v.parse().expect("header value"));
                }
                r
            }
            Reply::Slow { delay, status } => {
                tokio::time::sleep(delay).await;
                build(status, Body::from("late"))
            }
            Reply::Huge(n) => {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let stream = futures_util::stream::iter(
                    (0..n / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                build(200, Body::from_stream(stream))
            }
        }
    }
}
