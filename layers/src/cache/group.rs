//! [`CacheGroup`]: cache_keys dropped together.

use std::fmt;
use std::sync::Arc;

use vantage_core::Result;

use super::backend::Cache;
use super::slot::SlotKeys;

/// A group of cache_keys of one backend, invalidated together: typically an
/// entity's own cache_key and the cache_keys of its conditioned and related
/// views, which each cache their rows apart but all go stale when the
/// entity changes.
///
/// [`invalidate`](CacheGroup::invalidate) goes through the backend's fence,
/// as a write through a [`CacheLayer`](super::CacheLayer) does: the
/// generation of every member moves before anything is dropped, so a read
/// of any member that missed before the call and fetches afterwards does
/// not install its rows (no stale fill), and a member whose drop fails is
/// left unclean (its reads bypass the cache) until a later invalidation
/// succeeds. Members named by a prefix are found in the backend's store
/// (`RedbCache`'s file, `RedisCache`'s keys), so views cached by an earlier
/// run or another process are dropped too; see
/// [`Cache::invalidate_cache_keys_starting_with`].
///
/// ```
/// # use std::sync::Arc;
/// # use vantage_live_layers::cache::{Cache, CacheGroup, NoCache};
/// # async fn demo(cache: Arc<dyn Cache>) -> vantage_core::Result<()> {
/// // `clients`, and every view of it cached as `clients?<view>`.
/// let clients = CacheGroup::new(cache)
///     .with_cache_key("clients")
///     .with_cache_keys_starting_with("clients?");
/// clients.invalidate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CacheGroup {
    cache: Arc<dyn Cache>,
    keys: Vec<SlotKeys>,
    prefixes: Vec<String>,
}

impl CacheGroup {
    /// An empty group of `cache`'s cache_keys.
    pub fn new(cache: Arc<dyn Cache>) -> Self {
        Self {
            cache,
            keys: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    /// Add one cache_key, exactly as given to a
    /// [`CacheLayer`](super::CacheLayer) or `LiveTable`.
    pub fn with_cache_key(mut self, cache_key: impl Into<String>) -> Self {
        self.keys.push(SlotKeys::new(cache_key));
        self
    }

    /// Add every cache_key starting with `prefix` (matched on the cache_key
    /// as given, before escaping).
    pub fn with_cache_keys_starting_with(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// The backend.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// Drop every slot of every member. Every member is tried even if one
    /// fails; the first failure is returned (the failed members stay
    /// unclean, see the type's docs).
    pub async fn invalidate(&self) -> Result<()> {
        let mut outcome = Ok(());
        for keys in &self.keys {
            let dropped = self.cache.invalidate_prefix(keys.prefix()).await;
            if outcome.is_ok() {
                outcome = dropped;
            }
        }
        for prefix in &self.prefixes {
            let dropped = self.cache.invalidate_cache_keys_starting_with(prefix).await;
            if outcome.is_ok() {
                outcome = dropped;
            }
        }
        outcome
    }
}

impl fmt::Debug for CacheGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = self.keys.iter().map(SlotKeys::cache_key).collect();
        f.debug_struct("CacheGroup")
            .field("cache_keys", &keys)
            .field("cache_keys_starting_with", &self.prefixes)
            .finish_non_exhaustive()
    }
}
