//! [`RedisCache`]: a cache in Redis, shared by every process pointed at it.

mod error;
mod keys;
mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Value as RedisValue};
use tokio::time::Instant;
use vantage_core::{error, Result, VantageError};
use vantage_live_layers::cache::{
    split_key, Generations, Namespace, Peek, Prefix, Scope, SlotKeys, Ticket,
};
use vantage_live_layers::{Cache, CachedRows, CachedSlot};

pub use self::error::RedisCacheError;
use self::keys::{
    all_generations_pattern, generation_key, group_generations_pattern, slot_keys, SlotRedisKeys,
};
use self::scripts::Scripts;
use super::mem::typed;
use crate::redact::{redact_url, scrub, secrets_of};

/// The default time to live of every key a [`RedisCache`] writes: a day.
pub const DEFAULT_REDIS_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The default bound on each Redis operation (one script, one `SCAN` page):
/// 200 ms.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(200);
/// The default time to live of a lease: 1 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(1);
/// The default longest wait for another process's fill: 1.5 s.
pub const DEFAULT_LEASE_WAIT: Duration = Duration::from_millis(1500);
/// The default prefix of every key: `vlive`.
pub const DEFAULT_KEY_PREFIX: &str = "vlive";

/// The first pause between two looks at a slot another process is filling;
/// each pause doubles, up to [`POLL_MAX`].
const POLL_START: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(20);

/// A [`Cache`] whose slots live in Redis, shared by every process that points
/// at the same server, key prefix and cache_key.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use vantage_live::{LiveTable, RedisCache};
/// # async fn demo(master: vantage_table::any::AnyTable) -> Result<(), Box<dyn std::error::Error>> {
/// let cache = RedisCache::connect("redis://127.0.0.1:6379").await?;
/// let live = LiveTable::new(master, "clients", Arc::new(cache));
/// # Ok(()) }
/// ```
///
/// # Guarantees
///
/// Those of every backend (see
/// [`vantage_live_layers::cache`](vantage_live_layers::cache#guarantees)),
/// across processes:
///
/// - **No stale fill, across processes.** Every namespace (cache_key) has a
///   generation in Redis. A write's invalidation, in any process, moves it
///   (`INCR`) after the master accepted the write and before the write
///   answers. A read that misses records the generation it saw in its ticket
///   (one round trip: the lookup script answers the slot or the
///   generation), and its fill is a script that stores only if the
///   generation is still that one. So a fill that overlapped an invalidation
///   made by any process never lands, and a read that starts after a write
///   was acknowledged anywhere never sees a slot from before it.
/// - **One master read per slot across processes (leases).** A miss takes a
///   lease on the slot in the same script (`<generation>:<owner>`, expiring
///   after [`lease_ttl`](RedisCacheBuilder::lease_ttl), default 1 s). A read
///   in another process that misses while the lease stands waits for the
///   fill, looking again after 1 ms, 2 ms, 4 ms, … (at most 20 ms apart),
///   for at most [`lease_wait`](RedisCacheBuilder::lease_wait) (default
///   1.5 s); then it reads the master itself. Reads in the lease holder's
///   process join its single flight. A lease whose holder died expires, and
///   the next look takes it over: a slot is never stuck. (A holder whose
///   master read failed, or whose fill an invalidation refused, leaves its
///   lease to expire too; an invalidation makes every lease of the cache_key
///   stale at once, since leases carry the generation.)
/// - **Expiry.** Every key expires ([`ttl`](RedisCacheBuilder::ttl), default
///   a day; the generation's expiry is pushed back on every fill so it
///   outlives its slots).
/// - **Redis down, slow or restarted.** Every operation is bounded by
///   [`op_timeout`](RedisCacheBuilder::op_timeout) (default 200 ms). A lookup
///   that fails or times out is a miss (the read goes to the master); a
///   fill that fails is skipped; an invalidation that fails leaves the
///   cache_key unclean in this process (its reads skip Redis and retry the
///   invalidation until one succeeds), and the write still succeeds; the
///   cache also retries it in the background (every 50 ms, backing off to
///   1 s) until Redis takes it, because other processes read Redis: they
///   may serve the slot from before that write until Redis is reachable from
///   the writer again (plus at most 1 s), or, if the writer dies first,
///   until the slot's TTL or the next invalidation from anywhere. A
///   read therefore waits on Redis at most `op_timeout`, plus `lease_wait`
///   when another process holds the slot's lease. A restart loses every key,
///   which is safe: a missing generation is recreated from the Redis clock in
///   microseconds, so no ticket taken before the loss matches it and no fill
///   from before the restart lands. (This assumes the Redis server's clock
///   does not go back by more than the time since the generation was first
///   made.) The connection is re-made in the background, with jittered
///   backoff.
/// - **No secrets in logs or errors.** The URL appears only redacted
///   ([`redact_url`](crate::redact_url)); text from the Redis client has it taken out.
///
/// # What it costs
///
/// A hit is one round trip (a script); a miss is one round trip to look
/// (plus one per look while another process's lease stands) and one to
/// fill; an invalidation is one round trip per cache_key (a raw prefix of
/// `""` scans every generation key under the key prefix). Values are
/// [`CachedSlot::to_cbor`].
///
/// # Keys
///
/// `<prefix>:{n:<namespace>}:g` (the generation),
/// `<prefix>:{n:<namespace>}:s:<slot>` (a slot, as `<generation>:<CBOR>`)
/// and `<prefix>:{n:<namespace>}:l:<slot>` (its lease). The keys of a
/// cache_key share the Redis Cluster hash tag `n:<namespace>` (braces in it
/// escaped), so every script touches one hash slot. A cache_key drop is one
/// `INCR`; the old slots stop counting at once and are overwritten by the
/// next fill or expire.
///
/// # In this process
///
/// Clones share one connection (a [`ConnectionManager`]) and one in-process
/// [`Generations`]: single flight and the unclean mark work as for
/// [`MemCache`](super::MemCache). `RedisCache` never answers from memory
/// (its [`Cache::peek`] is always [`Peek::Unknown`]); put a
/// [`TieredCache`](super::TieredCache) in front for that.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    generations: Generations,
    settings: Settings,
    /// This instance's lease owner id (shared by its clones).
    owner: String,
    /// The URL, redacted: what `Debug` shows.
    redacted: String,
    /// The URL and its password, scrubbed from error text.
    secrets: Vec<String>,
    scripts: Scripts,
    lease_waits: AtomicU64,
    /// Invalidations that did not reach Redis, retried in the background.
    pending: Mutex<Pending>,
}

/// Generations to move in Redis that an invalidation could not move.
///
/// Each entry carries the number of the failure that put it there, so that
/// a retry that succeeded removes only what it covered (a later failure of
/// the same namespace stays pending).
#[derive(Default)]
struct Pending {
    namespaces: HashMap<String, u64>,
    /// Every namespace (a raw prefix of `""`), with its failure number.
    all: Option<u64>,
    failures: u64,
    retrying: bool,
}

impl Pending {
    /// Forget what a successful invalidation of `prefix` covered: entries
    /// whose failure number is at most `upto`.
    fn covered(&mut self, prefix: &Prefix, upto: u64) {
        match &prefix.namespaces {
            Some(names) => {
                for name in names {
                    if self.namespaces.get(name).is_some_and(|&n| n <= upto) {
                        self.namespaces.remove(name);
                    }
                }
            }
            None => {
                self.namespaces.retain(|_, n| *n > upto);
                if self.all.is_some_and(|n| n <= upto) {
                    self.all = None;
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.all.is_none()
    }
}

/// The retry task's first pause; it doubles up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
struct Settings {
    ttl: Duration,
    op_timeout: Duration,
    connect_timeout: Duration,
    lease_ttl: Duration,
    lease_wait: Duration,
    key_prefix: String,
}

/// Builds a [`RedisCache`]; every setting has a default.
#[derive(Clone)]
pub struct RedisCacheBuilder {
    url: String,
    settings: Settings,
}

impl fmt::Debug for RedisCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCacheBuilder")
            .field("url", &redact_url(&self.url))
            .field("settings", &self.settings)
            .finish()
    }
}

impl RedisCacheBuilder {
    /// Expire every key `ttl` after it was last written (default
    /// [`DEFAULT_REDIS_TTL`], a day; at least 1 ms).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// Give up on any one Redis operation after `timeout` (default
    /// [`DEFAULT_OP_TIMEOUT`], 200 ms): a lookup then misses, a fill is
    /// skipped, an invalidation fails (the cache_key is unclean until one
    /// succeeds). Also bounds each connection attempt.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.settings.op_timeout = timeout;
        self.settings.connect_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// Let a lease stand `ttl` (default [`DEFAULT_LEASE_TTL`], 1 s): how
    /// long other processes wait for a holder that died, and the longest
    /// master read that is never duplicated across processes.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    /// Wait at most `wait` for another process's fill before reading the
    /// master (default [`DEFAULT_LEASE_WAIT`], 1.5 s). `Duration::ZERO`
    /// never waits (leases then only tell; every process reads the master).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.settings.lease_wait = wait;
        self
    }

    /// Start every key with `prefix` (default [`DEFAULT_KEY_PREFIX`],
    /// `vlive`), so that several applications can share one Redis. Not
    /// empty, without `{` or `}`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.key_prefix = prefix.into();
        self
    }

    fn check(&self) -> std::result::Result<(), RedisCacheError> {
        let s = &self.settings;
        let invalid = |setting, reason: &str| {
            Err(RedisCacheError::InvalidSetting {
                setting,
                reason: reason.to_string(),
            })
        };
        if s.ttl < Duration::from_millis(1) {
            return invalid("ttl", "must be at least 1 ms");
        }
        if s.op_timeout.is_zero() {
            return invalid("op_timeout", "must not be zero");
        }
        if s.lease_ttl < Duration::from_millis(1) {
            return invalid("lease_ttl", "must be at least 1 ms");
        }
        if s.key_prefix.is_empty() || s.key_prefix.contains(['{', '}']) {
            return invalid("key_prefix", "must not be empty nor contain `{` or `}`");
        }
        Ok(())
    }

    fn client(&self) -> std::result::Result<redis::Client, RedisCacheError> {
        redis::Client::open(self.url.as_str()).map_err(|e| RedisCacheError::InvalidUrl {
            url: redact_url(&self.url),
            reason: scrub(&e.to_string(), &secrets_of(&self.url)),
        })
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.op_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_secs(1))
    }

    fn finish(self, conn: ConnectionManager) -> RedisCache {
        RedisCache {
            inner: Arc::new(Inner {
                conn,
                generations: Generations::new(),
                owner: uuid::Uuid::now_v7().simple().to_string(),
                redacted: redact_url(&self.url),
                secrets: secrets_of(&self.url),
                settings: self.settings,
                scripts: Scripts::new(),
                lease_waits: AtomicU64::new(0),
                pending: Mutex::new(Pending::default()),
            }),
        }
    }

    /// Connect now: fails if Redis cannot be reached within the connect
    /// timeout (the larger of `op_timeout` and 1 s), with the URL redacted.
    pub async fn connect(self) -> std::result::Result<RedisCache, RedisCacheError> {
        self.check()?;
        let client = self.client()?;
        let config = self.manager_config();
        let conn = tokio::time::timeout(
            self.settings.connect_timeout * 3,
            ConnectionManager::new_with_config(client, config),
        )
        .await;
        let secrets = secrets_of(&self.url);
        match conn {
            Ok(Ok(conn)) => Ok(self.finish(conn)),
            Ok(Err(e)) => Err(RedisCacheError::Connect {
                url: redact_url(&self.url),
                reason: scrub(&e.to_string(), &secrets),
            }),
            Err(_) => Err(RedisCacheError::Connect {
                url: redact_url(&self.url),
                reason: "timed out".to_string(),
            }),
        }
    }

    /// Connect on first use: never fails for want of Redis (until it is
    /// reachable, every operation fails within `op_timeout`, and reads go to
    /// the master). Fails only for a bad URL or setting. Call it inside a
    /// tokio runtime.
    pub fn connect_lazy(self) -> std::result::Result<RedisCache, RedisCacheError> {
        self.check()?;
        let client = self.client()?;
        let conn = ConnectionManager::new_lazy_with_config(client, self.manager_config()).map_err(
            |e| RedisCacheError::Connect {
                url: redact_url(&self.url),
                reason: scrub(&e.to_string(), &secrets_of(&self.url)),
            },
        )?;
        Ok(self.finish(conn))
    }
}

/// What the lookup script answered.
enum Looked {
    /// The generation, and the slot's bytes (its CBOR, the generation tag
    /// taken off).
    Hit(u64, Vec<u8>),
    /// A miss; `true` if this process should read the master (its lease, or
    /// none asked), `false` if another's lease stands.
    Miss(u64, bool),
}

impl RedisCache {
    /// Connect to the Redis at `url` (`redis://[user:password@]host:port[/db]`)
    /// with the default settings. See [`RedisCache::builder`].
    pub async fn connect(url: &str) -> std::result::Result<Self, RedisCacheError> {
        Self::builder(url).connect().await
    }

    /// A builder for the Redis at `url`, to choose the settings.
    pub fn builder(url: &str) -> RedisCacheBuilder {
        RedisCacheBuilder {
            url: url.to_string(),
            settings: Settings {
                ttl: DEFAULT_REDIS_TTL,
                op_timeout: DEFAULT_OP_TIMEOUT,
                connect_timeout: Duration::from_secs(1),
                lease_ttl: DEFAULT_LEASE_TTL,
                lease_wait: DEFAULT_LEASE_WAIT,
                key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            },
        }
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.inner.settings.key_prefix
    }

    /// The server's URL, redacted.
    pub fn url_redacted(&self) -> &str {
        &self.inner.redacted
    }

    /// The in-process invalidation state (what [`Cache::generations`]
    /// answers), for tiers in front of this cache.
    pub(crate) fn generations_ref(&self) -> &Generations {
        &self.inner.generations
    }

    /// How many times a lookup found another process's lease and waited.
    pub fn lease_waits(&self) -> u64 {
        self.inner.lease_waits.load(Ordering::Relaxed)
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn keys(&self, key: &str) -> SlotRedisKeys {
        let (namespace, slot) = split_key(key);
        slot_keys(&self.inner.settings.key_prefix, namespace, slot)
    }

    /// Run one Redis operation within `op_timeout`, its error redacted.
    async fn bounded<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.settings.op_timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(what, &e.to_string())),
            Err(_) => Err(self.error(
                what,
                &format!(
                    "timed out after {} ms",
                    self.inner.settings.op_timeout.as_millis()
                ),
            )),
        }
    }

    fn error(&self, what: &'static str, details: &str) -> VantageError {
        error!(
            "redis cache operation failed",
            op = what,
            server = self.inner.redacted,
            details = scrub(details, &self.inner.secrets)
        )
    }

    /// One run of the lookup script.
    async fn look(&self, keys: &SlotRedisKeys, take_lease: bool) -> Result<Looked> {
        let s = &self.inner.settings;
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.scripts.lookup.prepare_invoke();
        invocation
            .key(&keys.generation)
            .key(&keys.slot)
            .key(&keys.lease)
            .arg(Self::ms(s.ttl))
            .arg(Self::ms(s.lease_ttl))
            .arg(&self.inner.owner)
            .arg(if take_lease { "1" } else { "0" });
        let reply: Vec<RedisValue> = self
            .bounded("lookup", invocation.invoke_async(&mut conn))
            .await?;
        self.read_lookup(reply)
    }

    fn read_lookup(&self, reply: Vec<RedisValue>) -> Result<Looked> {
        let bad = || self.error("lookup", "unexpected reply from the lookup script");
        let mut parts = reply.into_iter();
        let status = match parts.next() {
            Some(RedisValue::Int(n)) => n,
            _ => return Err(bad()),
        };
        let generation = match parts.next() {
            Some(RedisValue::BulkString(text)) => parse_generation(&text).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        match (status, parts.next()) {
            (0, Some(RedisValue::BulkString(value))) => {
                let tag_len = generation_tag_len(generation);
                if value.len() < tag_len {
                    return Err(bad());
                }
                let mut value = value;
                value.drain(..tag_len);
                Ok(Looked::Hit(generation, value))
            }
            (1 | 3, None) => Ok(Looked::Miss(generation, true)),
            (2, None) => Ok(Looked::Miss(generation, false)),
            _ => Err(bad()),
        }
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<CachedSlot> {
        CachedSlot::from_cbor(bytes).map_err(|e| {
            error!(
                "redis cache slot does not decode",
                key = key,
                details = e.to_string()
            )
        })
    }

    /// Move the generation of `namespace` in Redis.
    async fn bump(&self, namespace: &str) -> Result<()> {
        let key = generation_key(&self.inner.settings.key_prefix, namespace);
        self.bump_key(&key).await
    }

    async fn bump_key(&self, key: &str) -> Result<()> {
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.scripts.invalidate.prepare_invoke();
        invocation.key(key).arg(Self::ms(self.inner.settings.ttl));
        let _: i64 = self
            .bounded("invalidate", invocation.invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    /// Move every generation under the key prefix (a raw prefix of `""`).
    async fn bump_all(&self) -> Result<()> {
        let pattern = all_generations_pattern(&self.inner.settings.key_prefix);
        self.bump_matching(&pattern).await
    }

    /// Move every generation whose key matches `pattern` (`SCAN MATCH`).
    async fn bump_matching(&self, pattern: &str) -> Result<()> {
        let mut cursor: u64 = 0;
        loop {
            let mut conn = self.inner.conn.clone();
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500);
            let (next, keys): (u64, Vec<String>) =
                self.bounded("scan", cmd.query_async(&mut conn)).await?;
            for key in keys {
                self.bump_key(&key).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl RedisCache {
    /// Move the generations in Redis of every namespace `prefix` covers.
    async fn bump_prefix(&self, prefix: &Prefix) -> Result<()> {
        match &prefix.namespaces {
            Some(names) => {
                for name in names {
                    self.bump(name).await?;
                }
                Ok(())
            }
            None => self.bump_all().await,
        }
    }

    /// Record the outcome of an invalidation of `prefix` in Redis: a failure
    /// is retried in the background until Redis takes it (other processes
    /// read Redis, not this process's unclean mark); a success makes a
    /// pending retry of the same namespaces unneeded.
    fn settle(&self, prefix: &Prefix, ok: bool) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            let upto = pending.failures;
            pending.covered(prefix, upto);
            return;
        }
        pending.failures += 1;
        let failure = pending.failures;
        match &prefix.namespaces {
            Some(names) => {
                for name in names {
                    pending.namespaces.insert(name.clone(), failure);
                }
            }
            None => pending.all = Some(failure),
        }
        if pending.retrying {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        pending.retrying = true;
        runtime.spawn(retry(Arc::downgrade(&self.inner)));
    }
}

/// Move the pending generations until Redis takes them all (or the cache is
/// dropped). Pauses double from [`RETRY_START`] to [`RETRY_MAX`].
async fn retry(inner: Weak<Inner>) {
    let mut pause = RETRY_START;
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cache = RedisCache { inner };
        let (prefix, upto) = {
            let pending = cache
                .inner
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let names = pending.namespaces.keys().cloned().collect::<Vec<_>>();
            let prefix = Prefix {
                namespaces: pending.all.is_none().then_some(names),
                scope: vantage_live_layers::cache::Scope::Whole,
            };
            (prefix, pending.failures)
        };
        if cache.bump_prefix(&prefix).await.is_ok() {
            let mut pending = cache
                .inner
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.covered(&prefix, upto);
            if pending.is_empty() {
                pending.retrying = false;
                tracing::info!("redis cache: failed invalidations reached Redis");
                return;
            }
        }
    }
}

/// A generation as the scripts store it (decimal text).
fn parse_generation(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The length of `<generation>:`.
fn generation_tag_len(generation: u64) -> usize {
    let mut digits = 1;
    let mut n = generation;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits + 1
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &self.inner.redacted)
            .field("key_prefix", &self.inner.settings.key_prefix)
            .field("ttl", &self.inner.settings.ttl)
            .field("op_timeout", &self.inner.settings.op_timeout)
            .finish()
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        match self.look(&self.keys(key), false).await? {
            Looked::Hit(_, bytes) => Ok(self.decode(key, &bytes)?.to_rows(key)),
            Looked::Miss(..) => Ok(None),
        }
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        let slot = typed(key, rows)?;
        let bytes = slot.to_cbor()?;
        let keys = self.keys(key);
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.scripts.put.prepare_invoke();
        invocation
            .key(&keys.generation)
            .key(&keys.slot)
            .arg(bytes)
            .arg(Self::ms(self.inner.settings.ttl));
        let _: i64 = self
            .bounded("put", invocation.invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    /// Moves this process's generations first, then the generation in Redis
    /// of every cache_key the prefix touches (a prefix inside a cache_key
    /// drops it whole), then settles.
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        let drop = self.inner.generations.start_drop(prefix, false);
        let parsed = Prefix::parse(prefix);
        let outcome = self.bump_prefix(&parsed).await;
        drop.finish(&outcome);
        self.settle(&parsed, outcome.is_ok());
        outcome
    }

    /// Moves this process's generations of the matching cache_keys first,
    /// then the generation in Redis of every matching cache_key found there
    /// (those only other processes used included), then settles. A failure
    /// is retried in the background as a drop of every cache_key (a cache
    /// may drop more than asked).
    async fn invalidate_cache_keys_starting_with(&self, cache_key_prefix: &str) -> Result<()> {
        let namespace_prefix = SlotKeys::new(cache_key_prefix).namespace().to_owned();
        let drop = self.inner.generations.start_group_drop(&namespace_prefix);
        let pattern = group_generations_pattern(&self.inner.settings.key_prefix, &namespace_prefix);
        let outcome = self.bump_matching(&pattern).await;
        let known = drop.prefix().clone();
        drop.finish(&outcome);
        match &outcome {
            Ok(()) => self.settle(&known, true),
            Err(_) => self.settle(
                &Prefix {
                    namespaces: None,
                    scope: Scope::Whole,
                },
                false,
            ),
        }
        outcome
    }

    /// The namespace's generation in Redis (0 if no process has used it
    /// yet): one `GET`, within the operation timeout.
    async fn shared_generation(&self, namespace: &Arc<Namespace>) -> Result<Option<u64>> {
        let key = generation_key(&self.inner.settings.key_prefix, namespace.name());
        let mut conn = self.inner.conn.clone();
        let text: Option<Vec<u8>> = self
            .bounded(
                "generation",
                redis::cmd("GET").arg(&key).query_async(&mut conn),
            )
            .await?;
        match text {
            None => Ok(Some(0)),
            Some(text) => parse_generation(&text)
                .map(Some)
                .ok_or_else(|| self.error("generation", "the generation key holds no number")),
        }
    }

    fn generations(&self) -> Option<&Generations> {
        Some(&self.inner.generations)
    }

    /// Always [`Peek::Unknown`]: the slots are in Redis, and every miss must
    /// go through [`lookup`](Cache::lookup) to record the generation.
    fn peek(&self, _key: &str, _namespace: &Arc<Namespace>) -> Peek {
        Peek::Unknown
    }

    /// One script: the slot, or the generation (recorded in the ticket) and
    /// a lease. While another process's lease stands, looks again until its
    /// fill lands or `lease_wait` has passed.
    async fn lookup(
        &self,
        key: &str,
        _namespace: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        let keys = self.keys(key);
        let mut deadline = None;
        let mut pause = POLL_START;
        loop {
            match self.look(&keys, true).await? {
                Looked::Hit(generation, bytes) => {
                    // The layer does not fill after a hit; a caller that
                    // does replaces the slot at this generation.
                    ticket.set_token(generation);
                    return self.decode(key, &bytes).map(Some);
                }
                Looked::Miss(generation, true) => {
                    ticket.set_token(generation);
                    return Ok(None);
                }
                Looked::Miss(generation, false) => {
                    ticket.set_token(generation);
                    let deadline = *deadline.get_or_insert_with(|| {
                        self.inner.lease_waits.fetch_add(1, Ordering::Relaxed);
                        Instant::now() + self.inner.settings.lease_wait
                    });
                    if Instant::now() + pause > deadline {
                        tracing::debug!(
                            slot = key,
                            "another process's lease outlived lease_wait; reading the master"
                        );
                        return Ok(None);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_MAX);
                }
            }
        }
    }

    /// Stores only if the generation in Redis is still the one the lookup
    /// recorded (checked in the script), and no invalidation started in this
    /// process since the ticket was taken. A ticket without a recorded
    /// generation (its lookup failed) stores nothing.
    async fn fill(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: Ticket,
        slot: CachedSlot,
    ) -> Result<bool> {
        let Some(generation) = ticket.token() else {
            return Ok(false);
        };
        if !ticket.is_current(namespace) {
            return Ok(false);
        }
        let cbor = slot.to_cbor()?;
        let mut value = Vec::with_capacity(cbor.len() + 24);
        value.extend_from_slice(generation.to_string().as_bytes());
        value.push(b':');
        value.extend_from_slice(&cbor);
        let keys = self.keys(key);
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.scripts.fill.prepare_invoke();
        invocation
            .key(&keys.generation)
            .key(&keys.slot)
            .key(&keys.lease)
            .arg(generation.to_string())
            .arg(value)
            .arg(Self::ms(self.inner.settings.ttl));
        let stored: i64 = self
            .bounded("fill", invocation.invoke_async(&mut conn))
            .await?;
        Ok(stored == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags() {
        for n in [0u64, 9, 10, 99, 100, 1_733_160_000_123_456, u64::MAX] {
            assert_eq!(generation_tag_len(n), n.to_string().len() + 1);
        }
        assert_eq!(
            parse_generation(b"1733160000123456"),
            Some(1_733_160_000_123_456)
        );
        assert_eq!(parse_generation(b"x"), None);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = RedisCache::builder("redis://127.0.0.1:6379")
            .key_prefix("a{b")
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("key_prefix"), "{err}");
        let err = RedisCache::builder("redis://127.0.0.1:6379")
            .ttl(Duration::ZERO)
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("ttl"), "{err}");
    }
}
