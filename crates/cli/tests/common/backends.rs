//! Cleanup of the shared services a test touches: its NATS stream and its
//! Redis keys.

/// A test's own NATS stream and Redis keys, removed on drop (also when the test fails).
pub struct SharedBackends {
    pub nats_url: String,
    pub stream: String,
    pub redis_url: String,
    pub redis_prefix: String,
}

impl Drop for SharedBackends {
    fn drop(&mut self) {
        let (url, stream) = (self.nats_url.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(client) = async_nats::connect(url).await {
                        let _ = async_nats::jetstream::new(client)
                            .delete_stream(&stream)
                            .await;
                    }
                });
            }
        })
        .join();
        if let Ok(mut c) =
            redis::Client::open(self.redis_url.as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.redis_prefix))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}
