//! The real `hookwarden` binary as a child process: its environment (own
//! ports, database, data directory and JWT secret), starting it with its
//! output collected, waiting until it answers, stopping it; and a temporary
//! data directory.

use base64::Engine;
use hookwarden_server::shared::jwt::{mint_hs256, Claims};
use hookwarden_store::testing::TestDb;
use secrecy::SecretString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http_client;

/// A port for a server a test starts: free now, below the kernel's
/// ephemeral range (32768–60999 on Linux) and never answered twice by this
/// process. A port found by binding port 0 and letting it go (as this did)
/// is the kernel's to hand out again, and a receiver the test started next
/// on port 0 could get it: the server then failed with "Address already in
/// use". Test binaries run one at a time (`cargo test`), so a counter per
/// process is enough.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const PORTS: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each run starts elsewhere in the range, so a run just after another
    // does not reach for the ports that run's servers just let go.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % PORTS,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..PORTS {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % PORTS) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + PORTS);
}

/// A running `hookwarden serve` whose output is collected.
pub struct Server {
    pub child: Child,
    pub logs: Arc<Mutex<String>>,
    pub port: u16,
}

pub struct Env {
    pub vars: Vec<(String, String)>,
    pub port: u16,
    pub jwt: SecretString,
}

impl Env {
    pub fn new(db: &TestDb, data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Self {
        Self::with_database(&db.url, data_dir, extra)
    }

    /// The value of one of the environment variables the server gets.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn with_database(url: &str, data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let jwt = format!("jwt-{}", uuid::Uuid::new_v4());
        let mut vars: Vec<(String, String)> = vec![
            ("HOOKWARDEN_DATABASE_URL".into(), url.to_owned()),
            ("HOOKWARDEN_DATA_DIR".into(), data_dir.display().to_string()),
            ("HOOKWARDEN_LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "HOOKWARDEN_OPS_LISTEN".into(),
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "HOOKWARDEN_MASTER_KEY".into(),
                base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
            ),
            ("HOOKWARDEN_JWT_HS256_SECRET".into(), jwt.clone()),
            (
                "HOOKWARDEN_ALLOWED_DESTINATIONS".into(),
                "127.0.0.1/32".into(),
            ),
            ("HOOKWARDEN_POLL_INTERVAL".into(), "100ms".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self {
            vars,
            port,
            jwt: SecretString::from(jwt),
        }
    }

    /// `hookwarden serve` with this environment, its output piped.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookwarden"));
        cmd.arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn start(&self) -> Server {
        let mut child = self.command().spawn().expect("start hookwarden");
        let logs = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as _),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut l = logs.lock().expect("lock");
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Server {
            child,
            logs,
            port: self.port,
        }
    }

    pub fn token(&self, account: Option<&str>, scope: &str) -> String {
        let now = chrono_now();
        let claims = Claims {
            sub: account.unwrap_or("producer").into(),
            account_id: account.map(str::to_owned),
            scope: scope.into(),
            exp: now + 600,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
        };
        mint_hs256(&self.jwt, &claims).expect("token")
    }
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn wait_ready(&mut self) {
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "hookwarden exited with {status}: {}",
                    self.logs.lock().expect("lock")
                );
            }
            if client.get(self.url("/v1/none")).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hookwarden did not start: {}",
                self.logs.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix: no cleanup, no drain
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
/// A temporary data directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> TempDir {
    let dir =
        std::env::temp_dir().join(format!("hookwarden_proc_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    TempDir(dir)
}
