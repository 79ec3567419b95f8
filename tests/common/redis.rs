//! The Redis server the `RedisCache` suites share.
//!
//! The server is `VANTAGE_LIVE_REDIS_URL` (default `redis://127.0.0.1:6379`).
//! A test that needs it gets a [`RedisSpace`] from [`redis_space`]: when the
//! server is unreachable the test prints why and returns, except under
//! `CI=true`, where it fails. Every space has a key prefix of its own
//! (`vlive-test-<tag>-<pid>-<nanos>-<n>`), so tests run in parallel and in
//! several processes without seeing each other's keys; dropping the space
//! deletes its keys (and they expire within 10 minutes anyway).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vantage_live::cache::{RedisCache, RedisCacheBuilder};

use super::postgres::in_ci;

/// Where the test server is.
pub fn redis_url() -> String {
    std::env::var("VANTAGE_LIVE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Can we reach it (a `PING` within 3 seconds)? `Err` says why not.
pub async fn redis_reachable() -> Result<(), String> {
    let url = redis_url();
    let attempt = async {
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(result) => result,
        Err(_) => Err("PING timed out after 3 s".into()),
    }
}

/// Whether Redis is there. If not: prints `skipping: ...` and returns
/// `false`, or panics under `CI=true`.
pub async fn redis_available(test: &str) -> bool {
    match redis_reachable().await {
        Ok(()) => true,
        Err(reason) if in_ci() => panic!(
            "{test}: Redis unreachable at {} ({reason}); CI=true requires it (start it with .ci/run)",
            vantage_live::redact_url(&redis_url())
        ),
        Err(reason) => {
            eprintln!(
                "skipping {test}: Redis unreachable at {} ({reason})",
                vantage_live::redact_url(&redis_url())
            );
            false
        }
    }
}

/// A fresh key prefix for `tag`.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "vlive-test-{tag}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A key prefix of one test's own; its keys are deleted on drop (unless
/// `keep` is set: a child process shares its parent's space).
#[derive(Debug)]
pub struct RedisSpace {
    /// The key prefix.
    pub prefix: String,
    keep: bool,
}

impl RedisSpace {
    /// A new space, or `None` (after printing why) if Redis is unreachable
    /// outside CI.
    pub async fn new(test: &str, tag: &str) -> Option<Self> {
        if !redis_available(test).await {
            return None;
        }
        Some(Self {
            prefix: unique_prefix(tag),
            keep: false,
        })
    }

    /// A new space, without checking that Redis is there (check once with
    /// [`redis_available`] first).
    pub fn unchecked(tag: &str) -> Self {
        Self {
            prefix: unique_prefix(tag),
            keep: false,
        }
    }

    /// The space `prefix` that another process made (not deleted on drop).
    pub fn shared(prefix: String) -> Self {
        Self { prefix, keep: true }
    }

    /// A builder for a `RedisCache` in this space (keys live 10 minutes).
    pub fn builder(&self) -> RedisCacheBuilder {
        RedisCache::builder(&redis_url())
            .key_prefix(self.prefix.clone())
            .ttl(Duration::from_secs(600))
    }

    /// A connected `RedisCache` in this space.
    pub async fn cache(&self) -> RedisCache {
        self.builder().connect().await.expect("connect to Redis")
    }

    /// How many keys the space holds now.
    pub fn key_count(&self) -> usize {
        self.keys().len()
    }

    /// The space's keys.
    pub fn keys(&self) -> Vec<String> {
        let Ok(client) = redis::Client::open(redis_url().as_str()) else {
            return Vec::new();
        };
        let Ok(mut conn) = client.get_connection() else {
            return Vec::new();
        };
        let pattern = format!("{}:*", self.prefix);
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let reply: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn);
            let Ok((next, found)) = reply else {
                return keys;
            };
            keys.extend(found);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }
}

impl Drop for RedisSpace {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        if let Ok(client) = redis::Client::open(redis_url().as_str()) {
            if let Ok(mut conn) = client.get_connection() {
                for chunk in keys.chunks(500) {
                    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query(&mut conn);
                }
            }
        }
    }
}
