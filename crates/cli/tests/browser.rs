//! Browser scenarios: the real binary driven by Debian's chromium through
//! Playwright. Each test starts `hookwarden serve` and runs one Python
//! scenario from `tests/browser/` (sharing `harness.py`) with the server's
//! addresses, the operator key and the screenshot directory in its
//! environment; the scenario's failure fails the test with its output.
//! `scripts/test` installs chromium and Playwright; without them every test
//! here fails and says so.

mod common;

use common::{tempdir, Env};
use hookwarden_store::testing::TestDb;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The operator key the server under test accepts.
const OPERATOR_KEY: &str = "browser-test-operator-key-4c1e8a7d92b35f60";

/// Debian's chromium; Playwright's own browser download is never used.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A scenario takes seconds; this only stops a hung browser holding the suite.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where scenarios save screenshots: in the repository, for the README.
fn shots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

/// Fails (never skips) when the browser or Playwright is missing.
fn require_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test, which installs Debian's chromium"
    );
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(playwright, Ok(s) if s.success()),
        "python3 cannot import playwright: run scripts/test, which installs it from PyPI"
    );
}

/// Starts the binary (SQLite, `OPERATOR_KEY` accepted, `extra_env` added to
/// its environment) and runs `tests/browser/<name>.py` against it. The
/// script gets HW_BASE (public base URL), HW_OPS (ops listener URL),
/// HW_OPERATOR_KEY, HW_SHOTS (screenshot directory) and `extra_env` too.
fn scenario(name: &str, extra_env: &[(&str, &str)]) {
    require_browser();
    let script = browser_dir().join(format!("{name}.py"));
    assert!(script.is_file(), "no scenario {}", script.display());

    // The pages are what is under test here; both backends are covered by
    // the server's own suites.
    let db = TestDb::sqlite();
    let dir = tempdir();
    let mut vars = vec![("HOOKWARDEN_MANAGEMENT_API_KEYS", OPERATOR_KEY)];
    vars.extend_from_slice(extra_env);
    let env = Env::new(&db, &dir, &vars);
    let mut server = env.start();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(server.wait_ready());

    let ops = env.var("HOOKWARDEN_OPS_LISTEN").expect("ops listener");
    let shots = shots_dir();
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .current_dir(browser_dir())
        .env("HW_BASE", server.url(""))
        .env("HW_OPS", format!("http://{ops}"))
        .env("HW_OPERATOR_KEY", OPERATOR_KEY)
        // Tenant tokens for what the portal cannot set (an endpoint's filter).
        .env(
            "HW_JWT_SECRET",
            env.var("HOOKWARDEN_JWT_HS256_SECRET")
                .expect("HS256 secret"),
        )
        .env("HW_SHOTS", &shots)
        // Tracebacks and prints arrive in order and whole, even when killed.
        .env("PYTHONUNBUFFERED", "1")
        // Keep the source tree free of bytecode caches.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let run = run_with_limit(cmd, SCENARIO_LIMIT);
    let took = started.elapsed();
    let ended = match run.status {
        Some(status) if status.success() => None,
        Some(status) => Some(status.to_string()),
        None => Some(format!("killed after {SCENARIO_LIMIT:?}")),
    };
    assert!(
        ended.is_none(),
        "browser scenario {name} failed ({}) after {took:.1?}\n--- stdout\n{}\n--- stderr\n{}\n--- hookwarden\n{}",
        ended.unwrap_or_default(),
        run.stdout,
        run.stderr,
        server.logs()
    );
    eprintln!("browser scenario {name} passed in {took:.1?}");
}

/// What a scenario process printed and how it ended.
struct Run {
    /// None when it was killed at the time limit.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` in its own process group, killing the group (python3 and
/// chromium) after `limit`; both pipes are read as it runs so a chatty
/// script never blocks on a full pipe.
fn run_with_limit(mut cmd: Command, limit: Duration) -> Run {
    let mut child = cmd.process_group(0).spawn().expect("start python3");
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as _));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait for python3") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                // The whole group, so no browser keeps the pipes open.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The harness alone: chromium starts and loads a page of the server.
#[test]
fn harness_selftest() {
    scenario("harness_selftest", &[]);
}

/// The operator console's sign-in, overview and sign-out.
#[test]
fn smoke() {
    scenario("smoke", &[]);
}

/// An operator creates a Stripe integration in the console, a signed webhook
/// appears in the inbound list, its page shows the body and the forwarding
/// timeline, and a replay with a reason adds a second try. (The forwarding
/// target is the development sink on the same server: 127.0.0.1 is one of
/// `Env`'s allowed destinations.)
#[test]
fn operator_inbound() {
    scenario("operator_inbound", &[]);
}

/// A tenant enters the portal through a minted link, adds an endpoint (a
/// receiver the scenario runs on 127.0.0.1, one of `Env`'s allowed
/// destinations), sends a test event, sees it delivered, retries it, reveals
/// the signing secret; an address the SSRF rules refuse is a form error.
#[test]
fn portal_tenant() {
    // The platform's pages link to the portal: their links open it at once.
    scenario(
        "portal_tenant",
        &[("HOOKWARDEN_PORTAL_FRAME_ANCESTORS", "http://platform.test")],
    );
}

/// Attack: markup and script in an endpoint description, an inbound body
/// and header, a search and a refused form show as text and run nothing.
#[test]
fn attack_xss() {
    scenario("attack_xss", &[]);
}

/// Attack: forms forged on another origin (and another site), and POSTs
/// without the session's CSRF token, are refused; nothing changes.
#[test]
fn attack_csrf() {
    scenario("attack_csrf", &[]);
}

/// Attack: a portal session opening and acting on another account's
/// endpoint and delivery sees Not found and changes nothing.
#[test]
fn attack_cross_account() {
    scenario("attack_cross_account", &[]);
}

/// Attack: a used portal link, a console cookie kept past sign-out, and
/// sessions revoked from the console's Sessions page no longer open anything.
#[test]
fn attack_sessions() {
    scenario("attack_sessions", &[]);
}

/// Attack: a console session outlives `HOOKWARDEN_CONSOLE_SESSION_TTL`.
#[test]
fn attack_session_ttl() {
    scenario(
        "attack_session_ttl",
        &[("HOOKWARDEN_CONSOLE_SESSION_TTL", "10s")],
    );
}

/// Attack: more than 10 sign-in attempts a minute from one client.
#[test]
fn attack_sign_in_limit() {
    scenario("attack_sign_in_limit", &[]);
}
