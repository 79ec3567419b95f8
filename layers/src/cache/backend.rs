//! The [`Cache`] trait every backend implements, [`CachedRows`], and
//! [`NoCache`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ciborium::Value as Cbor;
use vantage_core::{error, Result};
use vantage_types::Record;

use crate::request::Rows;

/// Rows stored in one cache slot, with the time they were fetched.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRows {
    /// The rows, keyed by id, in the master's order.
    pub rows: Rows,
    /// When the rows were read from the master.
    pub fetched_at: SystemTime,
}

impl CachedRows {
    /// `rows`, fetched now.
    pub fn new(rows: Rows) -> Self {
        Self {
            rows,
            fetched_at: SystemTime::now(),
        }
    }

    /// Encode as CBOR: `[seconds, nanos, [[id, {field: value, ..}], ..]]`.
    ///
    /// Row and field order are kept, and every CBOR value comes back equal
    /// (integers over the whole CBOR range, floats, bytes, tags, nested
    /// arrays and maps). Disk backends store this.
    pub fn to_cbor(&self) -> Result<Vec<u8>> {
        let since = self
            .fetched_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let rows = self
            .rows
            .iter()
            .map(|(id, record)| {
                let fields = record
                    .iter()
                    .map(|(k, v)| (Cbor::Text(k.clone()), v.clone()))
                    .collect();
                Cbor::Array(vec![Cbor::Text(id.clone()), Cbor::Map(fields)])
            })
            .collect();
        let doc = Cbor::Array(vec![
            Cbor::Integer(since.as_secs().into()),
            Cbor::Integer(since.subsec_nanos().into()),
            Cbor::Array(rows),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&doc, &mut out)
            .map_err(|e| error!("could not encode cached rows as CBOR", details = e))?;
        Ok(out)
    }

    /// Decode what [`CachedRows::to_cbor`] wrote. Bytes of any other shape are
    /// an error naming what was wrong, never a panic.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let doc: Cbor = ciborium::from_reader(bytes)
            .map_err(|e| error!("cached rows are not valid CBOR", details = e))?;
        let bad = |what: &str| error!("cached rows have the wrong shape", details = what);
        let Cbor::Array(parts) = doc else {
            return Err(bad("top level is not an array"));
        };
        // The decoded document is consumed: ids, field names and values move
        // into the rows instead of being copied out of it.
        let [secs, nanos, rows] =
            <[Cbor; 3]>::try_from(parts).map_err(|_| bad("expected [seconds, nanos, rows]"))?;
        let (Cbor::Integer(secs), Cbor::Integer(nanos), Cbor::Array(rows)) = (secs, nanos, rows)
        else {
            return Err(bad("expected [seconds, nanos, rows]"));
        };
        let secs = u64::try_from(secs).map_err(|_| bad("seconds out of range"))?;
        let nanos = u32::try_from(nanos).map_err(|_| bad("nanos out of range"))?;
        let fetched_at = UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos))
            .ok_or_else(|| bad("fetched_at out of range"))?;
        let mut out = Rows::with_capacity(rows.len());
        for row in rows {
            let Cbor::Array(pair) = row else {
                return Err(bad("row is not an [id, fields] pair"));
            };
            let [id, fields] =
                <[Cbor; 2]>::try_from(pair).map_err(|_| bad("row is not an [id, fields] pair"))?;
            let (Cbor::Text(id), Cbor::Map(fields)) = (id, fields) else {
                return Err(bad("row is not an [id, fields] pair"));
            };
            let mut record = Record::with_capacity(fields.len());
            for (k, v) in fields {
                let Cbor::Text(k) = k else {
                    return Err(bad("field name is not text"));
                };
                record.insert(k, v);
            }
            out.insert(id, record);
        }
        Ok(Self {
            rows: out,
            fetched_at,
        })
    }
}

/// A cache backend: slots of [`CachedRows`] under string keys.
///
/// Keys are built by [`SlotKeys`](super::SlotKeys): the escaped cache_key, a
/// `/`, then the slot within it. Backends may rely on that to keep one
/// namespace per cache_key (the text before the first `/`), but must give
/// any key the plain string semantics below.
///
/// A cache is disposable: a backend that fails costs speed, never a wrong
/// answer. The cache layer treats a failing `get` as a miss, a failing `put`
/// or `generation` as a skipped fill, and a failing `invalidate_prefix` as a
/// reason to stop reading the backend for that cache_key until an
/// invalidation succeeds.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The slot stored under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<CachedRows>>;

    /// Store `rows` under `key`, replacing what was there.
    async fn put(&self, key: &str, rows: CachedRows) -> Result<()>;

    /// Drop every slot whose key starts with `prefix`. The cache layer calls
    /// this with a whole cache_key's prefix ([`SlotKeys::prefix`](super::SlotKeys::prefix)).
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()>;

    /// The current generation of `key`'s namespace: a number that changes
    /// whenever [`invalidate_prefix`](Cache::invalidate_prefix) drops that
    /// whole namespace.
    ///
    /// Together with [`put_if_generation`](Cache::put_if_generation) this
    /// fences fills: a read that took the generation before asking the master
    /// installs its rows only if no invalidation happened since, so a slow
    /// read cannot put back rows older than a write.
    ///
    /// The default returns `0`. The cache layer then fences fills only with
    /// the epoch it shares between stacks given the same `Arc<dyn Cache>`,
    /// which cannot make the check and the store atomic: a racing store is
    /// dropped again right after it, and stacks reaching the store through
    /// other `Arc`s are not fenced (see the [module docs](super)). Every
    /// backend in this project overrides both methods.
    async fn generation(&self, key: &str) -> Result<u64> {
        let _ = key;
        Ok(0)
    }

    /// Store `rows` under `key` only if `key`'s namespace is still at
    /// `generation`; answers whether it stored them. Check and store must be
    /// atomic with respect to `invalidate_prefix`.
    ///
    /// The default stores unconditionally.
    async fn put_if_generation(
        &self,
        key: &str,
        rows: CachedRows,
        generation: u64,
    ) -> Result<bool> {
        let _ = generation;
        self.put(key, rows).await?;
        Ok(true)
    }

    /// Whether this backend keeps what it is given. A backend that answers
    /// `false` must miss on every [`get`](Cache::get); the cache layer then
    /// skips its fills altogether instead of copying the rows of every read
    /// only to have them dropped. The default is `true`; [`NoCache`] answers
    /// `false`.
    fn stores(&self) -> bool {
        true
    }
}

/// A cache that stores nothing: every `get` misses.
///
/// A stack over `NoCache` reads the master every time, which makes it the
/// parity check for any other backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

#[async_trait]
impl Cache for NoCache {
    async fn get(&self, _key: &str) -> Result<Option<CachedRows>> {
        Ok(None)
    }

    async fn put(&self, _key: &str, _rows: CachedRows) -> Result<()> {
        Ok(())
    }

    async fn invalidate_prefix(&self, _prefix: &str) -> Result<()> {
        Ok(())
    }

    async fn put_if_generation(&self, _key: &str, _rows: CachedRows, _gen: u64) -> Result<bool> {
        Ok(false)
    }

    fn stores(&self) -> bool {
        false
    }
}
