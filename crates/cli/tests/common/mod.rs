//! What the process tests share, by job: the real `hookwarden` binary
//! started with its own ports, database and data directory (`server`);
//! requests to it (`requests`); receivers that record what they are sent
//! (`receivers`); and cleanup of every shared backend a test touches
//! (`backends`).
#![allow(dead_code)] // each test file uses its own subset

mod backends;
mod receivers;
mod requests;
mod server;

// Each test file imports its own subset of these.
#[allow(unused_imports)]
pub use backends::SharedBackends;
#[allow(unused_imports)]
pub use receivers::{receiver, tallying_receiver, InFlight, Tally};
#[allow(unused_imports)]
pub use requests::{create_integrations, http_client, post, start_with_webhook};
#[allow(unused_imports)]
pub use server::{chrono_now, free_port, tempdir, Env, Server, TempDir};
