//! State for backends that own none: a third-party [`Cache`] implementing
//! only the seed's `get`, `put` and `invalidate_prefix`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use vantage_core::Result;

use super::backend::{Cache, Peek};
use super::cached::{CachedRows, CachedSlot};
use super::generations::{Generations, Namespace, Ticket};
use super::slot::escape;

/// A backend without [`Generations`] of its own, given some by one cache
/// layer. Only that layer's stacks see them: see the module docs of
/// [`cache`](super) for what that weakens.
pub(crate) struct LayerFenced {
    inner: Arc<dyn Cache>,
    generations: Generations,
}

impl LayerFenced {
    pub(crate) fn new(inner: Arc<dyn Cache>) -> Self {
        Self {
            inner,
            generations: Generations::new(),
        }
    }
}

impl fmt::Debug for LayerFenced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerFenced").finish_non_exhaustive()
    }
}

#[async_trait]
impl Cache for LayerFenced {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        self.inner.put(key, rows).await
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        let drop = self.generations.start_drop(prefix, true);
        let outcome = self.inner.invalidate_prefix(prefix).await;
        drop.finish(&outcome);
        outcome
    }

    /// Moves this layer's generations of the matching cache_keys, then hands
    /// the escaped prefix to the backend (the seed's "every key starting
    /// with it").
    async fn invalidate_cache_keys_starting_with(&self, cache_key_prefix: &str) -> Result<()> {
        let namespace_prefix = escape(cache_key_prefix);
        let drop = self.generations.start_group_drop(&namespace_prefix);
        let outcome = self.inner.invalidate_prefix(&namespace_prefix).await;
        drop.finish(&outcome);
        outcome
    }

    fn generations(&self) -> Option<&Generations> {
        Some(&self.generations)
    }

    fn peek(&self, key: &str, namespace: &Arc<Namespace>) -> Peek {
        self.inner.peek(key, namespace)
    }

    async fn lookup(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        self.inner.lookup(key, namespace, ticket).await
    }

    /// Check, store, check again: the backend cannot make the check and the
    /// store atomic, so a store that an invalidation overtook is dropped
    /// again (and if that fails, the namespace is poisoned).
    async fn fill(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: Ticket,
        slot: CachedSlot,
    ) -> Result<bool> {
        if !ticket.is_current(namespace) {
            return Ok(false);
        }
        let Some(rows) = slot.to_rows(key) else {
            return Ok(false);
        };
        self.inner.put(key, rows).await?;
        if ticket.is_current(namespace) {
            return Ok(true);
        }
        if let Err(error) = self.inner.invalidate_prefix(key).await {
            namespace.poison();
            tracing::warn!(slot = key, %error, "could not drop a fill that raced an invalidation");
        }
        Ok(false)
    }

    fn stores(&self) -> bool {
        self.inner.stores()
    }
}
