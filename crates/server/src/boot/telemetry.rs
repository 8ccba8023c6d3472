//! Logging set-up: `RUST_LOG` wins over the default filter; text or JSON.
//! What we log is chosen at each call site: ids, outcomes and durations —
//! never secrets, signatures, raw bodies or payload fields.
//!
//! Lines reach stdout through a thread of their own ([`LogWriter`]), so a
//! closed pipe, a full one or a reader that stalls never stops or panics
//! the runtime: lines that cannot be written are dropped and counted.

use crate::config::LogFormat;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, EnvFilter};

const DEFAULT_FILTER: &str = "info,sqlx=warn,async_nats=warn,hyper=warn,reqwest=warn";

/// Lines held for the writer thread; past that, new lines are dropped.
const BUFFERED_LINES: usize = 16 * 1024;
/// How long exit waits for buffered lines to reach stdout.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Installs the global subscriber; a second call is a no-op (tests). Keep
/// the guard until exit: dropping it flushes what is still buffered.
#[must_use = "dropping the guard at once may lose the last log lines"]
pub fn init(format: LogFormat) -> LogGuard {
    let (writer, guard) = LogWriter::stdout();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colours only for a person at a terminal: a file or a pipe gets none.
    let ansi = matches!(format, LogFormat::Text) && std::io::stdout().is_terminal();
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer)
        // Its report of a failed write would go to stderr, which may be
        // closed too (and `eprint!` panics then); our writer never fails.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// A `MakeWriter` that hands each line to the writer thread without waiting.
#[derive(Clone)]
pub struct LogWriter {
    tx: SyncSender<Msg>,
}

/// Flushes the writer thread (for at most [`FLUSH_WAIT`]) when dropped.
pub struct LogGuard {
    tx: SyncSender<Msg>,
}

impl LogWriter {
    /// A writer thread over stdout.
    pub fn stdout() -> (Self, LogGuard) {
        Self::to(std::io::stdout())
    }

    /// A writer thread over `out` (tests hand it a pipe of their own).
    pub fn to(out: impl Write + Send + 'static) -> (Self, LogGuard) {
        let (tx, rx) = mpsc::sync_channel(BUFFERED_LINES);
        let spawned = std::thread::Builder::new()
            .name("hookwarden-log".into())
            .spawn(move || write_lines(rx, out));
        if spawned.is_err() {
            // No thread: the receiver is gone, so every line is dropped
            // (counted) rather than written from the runtime's threads.
            dropped(1);
        }
        (Self { tx: tx.clone() }, LogGuard { tx })
    }
}

fn write_lines(rx: Receiver<Msg>, mut out: impl Write) {
    for msg in rx {
        match msg {
            Msg::Line(line) => {
                // A closed pipe (EPIPE) or any other failure loses this
                // line only; the next one is tried again.
                if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                    dropped(1);
                }
            }
            Msg::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
}

fn dropped(n: u64) {
    metrics::counter!(crate::shared::metrics::LOG_LINES_DROPPED).increment(n);
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.tx.try_send(Msg::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => dropped(1),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut msg = Msg::Flush(done_tx);
        // The queue may be full behind a stalled reader: retry until the
        // deadline, then give up rather than hold the process open.
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
        let _ = done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An output that fails every write, as a closed pipe does.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    /// An output that never returns from a write, as a full pipe nobody reads.
    struct Stalled(Arc<Mutex<()>>);
    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _held = self.0.lock();
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_output_and_are_flushed_on_drop() {
        let out = Shared::default();
        let (writer, guard) = LogWriter::to(out.clone());
        let mut w = writer.make_writer();
        w.write_all(b"one\n").expect("write");
        w.write_all(b"two\n").expect("write");
        drop(guard);
        assert_eq!(&*out.0.lock().expect("lock"), b"one\ntwo\n");
    }

    #[test]
    fn a_closed_output_drops_lines_without_failing_or_panicking() {
        let (writer, guard) = LogWriter::to(Closed);
        for _ in 0..1000 {
            writer
                .make_writer()
                .write_all(b"line\n")
                .expect("never fails");
        }
        drop(guard);
    }

    #[test]
    fn a_stalled_output_never_blocks_the_caller_nor_exit() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().expect("lock");
        let (writer, guard) = LogWriter::to(Stalled(gate.clone()));
        let started = Instant::now();
        for _ in 0..(BUFFERED_LINES * 2) {
            writer
                .make_writer()
                .write_all(b"line\n")
                .expect("never fails");
        }
        drop(guard);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(held);
    }
}
