//! The shared services a test takes its own slice of: a Redis key prefix
//! and a NATS subject prefix and stream, each removed on drop.

use std::time::Duration;

pub fn redis_url() -> String {
    std::env::var("HOOKWARDEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis key prefix of its own for one test, with its keys removed afterwards.
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn new() -> Self {
        let url = redis_url();
        let reachable = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)));
        if let Err(e) = reachable {
            panic!(
                "Redis is needed for this test and is not reachable at {url}: {e}. Start it with: redis-server --daemonize yes \
                 --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
            );
        }
        Self(format!("hwtest:{}:", uuid::Uuid::new_v4().simple()))
    }

    pub fn options(&self) -> Option<(String, String)> {
        Some((redis_url(), self.0.clone()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Ok(mut c) =
            redis::Client::open(redis_url().as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.0))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

pub fn nats_url() -> String {
    std::env::var("HOOKWARDEN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A NATS subject prefix and stream of one test's own, deleted on drop (also
/// when the test fails).
pub struct NatsTest {
    pub prefix: String,
    pub stream: String,
    pub client: async_nats::Client,
}

impl NatsTest {
    pub async fn new() -> Self {
        let url = nats_url();
        let client = async_nats::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "NATS with JetStream is needed for this test and is not reachable at {url}: {e}. Start it with: \
                 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server"
            )
        });
        let prefix = format!("hwt{}.webhook", uuid::Uuid::new_v4().simple());
        let stream = prefix.replace('.', "_").to_uppercase();
        Self {
            prefix,
            stream,
            client,
        }
    }

    pub fn options(&self) -> Option<(String, String)> {
        Some((nats_url(), self.prefix.clone()))
    }
}

impl Drop for NatsTest {
    fn drop(&mut self) {
        // Drop may run inside a runtime: delete from a thread with its own.
        let stream = self.stream.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(client) = async_nats::connect(nats_url()).await {
                        let _ = async_nats::jetstream::new(client)
                            .delete_stream(&stream)
                            .await;
                    }
                });
            }
        })
        .join();
    }
}
