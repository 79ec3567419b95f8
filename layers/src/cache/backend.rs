//! The [`Cache`] trait every backend implements, and [`NoCache`].

use std::sync::Arc;

use async_trait::async_trait;
use vantage_core::{error, Result};

use super::cached::{CachedRows, CachedSlot, SlotKind};
use super::generations::{Generations, Namespace, Ticket};
use super::row_index::RowChange;
use super::slot::escape;

/// What [`Cache::peek`] found without waiting.
#[derive(Clone, Debug, PartialEq)]
pub enum Peek {
    /// The slot is stored: here it is.
    Hit(CachedSlot),
    /// The slot is not stored.
    Miss,
    /// The backend cannot tell without waiting (the slot may be on disk or
    /// across the network): call [`Cache::lookup`].
    Unknown,
}

/// A cache backend: typed slots under string keys.
///
/// # The seed's contract
///
/// [`get`](Cache::get), [`put`](Cache::put) and
/// [`invalidate_prefix`](Cache::invalidate_prefix) speak [`CachedRows`] and
/// keep the meaning they had in the seed design. A backend that implements
/// only these three works: the cache layer then keeps the invalidation state
/// itself, per layer, with the weaker fencing its [module docs](super)
/// describe.
///
/// Keys are built by [`SlotKeys`](super::SlotKeys): the escaped cache_key
/// (the *namespace*), a `/`, then the slot. Prefixes given to
/// `invalidate_prefix` mean:
///
/// - `"<namespace>/"`: every slot of that cache_key;
/// - `"<namespace>/<start of a slot>"`: the slots of that cache_key whose
///   slot starts with the rest (a backend may drop the whole namespace);
/// - a bare cache_key, without `/`: every slot of *that* cache_key, and no
///   other (`"client"` does not touch `"clients/…"`);
/// - `""`: everything.
///
/// # The full contract
///
/// A backend that owns its invalidation state returns it from
/// [`generations`](Cache::generations) and implements
/// [`lookup`](Cache::lookup) and [`fill`](Cache::fill) (and, if it can
/// answer from memory, [`peek`](Cache::peek)) as
/// [`Generations`](super::Generations) describes. The cache layer then makes
/// one trip per lookup and one per fill, and every stack and clone sharing
/// the backend is fenced by one state.
///
/// A cache is disposable: a backend that fails costs speed, never a wrong
/// answer. The cache layer treats a failing lookup as a miss, a failing fill
/// as a skipped fill, and a failing invalidation as a reason to stop reading
/// the backend for that cache_key until an invalidation succeeds.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The slot stored under `key`, in the seed's shape (see
    /// [`CachedSlot::to_rows`]), if any.
    async fn get(&self, key: &str) -> Result<Option<CachedRows>>;

    /// Store `rows` under `key`, replacing what was there. Under a key of
    /// [`SlotKeys`](super::SlotKeys) the rows must have that slot kind's
    /// shape (see [`CachedSlot::from_rows`]).
    async fn put(&self, key: &str, rows: CachedRows) -> Result<()>;

    /// Drop every slot under `prefix` (see the trait docs for what a prefix
    /// covers). A backend that owns [`Generations`] moves them before it
    /// drops anything (see [`Generations::start_drop`]).
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()>;

    /// Drop every cache_key that starts with `cache_key_prefix`, whole,
    /// through the same fence as [`invalidate_prefix`](Cache::invalidate_prefix):
    /// the generation of each one moves before anything is dropped, so no
    /// fill that started before this call lands after it, and a failure
    /// leaves them unclean. This is how a group of cache_keys (an entity's
    /// own and those of its conditioned or related views, e.g. `"clients"`
    /// and every `"clients?..."`) is dropped at once: see
    /// [`CacheGroup`](super::CacheGroup).
    ///
    /// `""` drops every cache_key. The match is on the cache_key as given
    /// (before escaping), character by character: `"clients"` also covers
    /// `"clients_archive"`.
    ///
    /// The default suits a backend whose slots live in this process's
    /// memory: it drops, one by one, the cache_keys its
    /// [`generations`](Cache::generations) have seen. A backend whose store
    /// outlives the process or is shared by processes overrides it to drop
    /// what the store holds too (`RedbCache` and `RedisCache` do). For a
    /// backend that owns no generations, the default hands the escaped prefix
    /// to `invalidate_prefix`, whose seed meaning is "every key starting with
    /// it".
    async fn invalidate_cache_keys_starting_with(&self, cache_key_prefix: &str) -> Result<()> {
        let namespace_prefix = escape(cache_key_prefix);
        let Some(generations) = self.generations() else {
            return self.invalidate_prefix(&namespace_prefix).await;
        };
        let mut outcome = Ok(());
        for name in generations.names_starting_with(&namespace_prefix) {
            // Every one is tried; the first failure is returned.
            let dropped = self.invalidate_prefix(&format!("{name}/")).await;
            if outcome.is_ok() {
                outcome = dropped;
            }
        }
        outcome
    }

    /// The invalidation state this backend owns, shared by all its clones.
    ///
    /// The default, `None`, makes each cache layer over the backend keep
    /// state of its own: see the [module docs](super) for what that weakens.
    fn generations(&self) -> Option<&Generations> {
        None
    }

    /// The slot under `key`, if the backend can tell without waiting (from
    /// memory). The default is [`Peek::Unknown`].
    fn peek(&self, key: &str, namespace: &Arc<Namespace>) -> Peek {
        let _ = (key, namespace);
        Peek::Unknown
    }

    /// The slot under `key`, typed: one trip to the backend.
    ///
    /// `ticket` is the one the cache layer took before the lookup and will
    /// give to [`fill`](Cache::fill) if this misses. A backend whose fill
    /// must be fenced by state it only learns while looking (a remote
    /// generation) records it with [`Ticket::set_token`]; such a backend must
    /// never answer [`Peek::Miss`], so that every miss goes through here.
    ///
    /// The default reads [`get`](Cache::get) and types it by the key's
    /// [`SlotKind`]; a slot of the wrong shape is an error.
    async fn lookup(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        let _ = (namespace, ticket);
        match self.get(key).await? {
            None => Ok(None),
            Some(rows) => CachedSlot::from_rows(SlotKind::of_key(key), rows)
                .map(Some)
                .ok_or_else(|| error!("cached slot has the wrong shape for its kind", key = key)),
        }
    }

    /// Store `slot` under `key` if `ticket` is still current for
    /// `namespace`, checked atomically with the store (see
    /// [`Generations`]); answers whether it stored it. One trip.
    ///
    /// The default checks the ticket, then [`put`](Cache::put)s the slot in
    /// the seed's shape (an absent row is not stored): it cannot make the
    /// check and the store atomic.
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
        match slot.to_rows(key) {
            Some(rows) => self.put(key, rows).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Drop the slots of `namespace` that `change` can make wrong, and no
    /// others if the backend can (see [`RowChange`] for which slots those
    /// are), fenced as [`invalidate_prefix`](Cache::invalidate_prefix) is.
    ///
    /// A backend that answers [`drops_rows`](Cache::drops_rows) with `true`
    /// implements it with [`Namespace::start_row_drop`]: if that answers
    /// `None`, it drops the whole namespace; otherwise it drops exactly the
    /// slots named, atomically with respect to fills of each slot, and
    /// settles with [`RowDrop::finish`](super::RowDrop::finish). The
    /// default drops the whole namespace (a cache may always drop more than
    /// asked).
    async fn invalidate_rows(&self, namespace: &Arc<Namespace>, change: &RowChange) -> Result<()> {
        let _ = change;
        self.invalidate_prefix(&namespace.whole_prefix()).await
    }

    /// Whether [`invalidate_rows`](Cache::invalidate_rows) can drop less
    /// than the whole namespace: every slot this backend answers went
    /// through [`fill`](Cache::fill) on this instance (or a raw
    /// [`put`](Cache::put), which it reports with
    /// [`Namespace::stored_unrecorded`]). A backend shared by processes
    /// cannot say that and answers `false`, the default.
    fn drops_rows(&self) -> bool {
        false
    }

    /// Where invalidations of `namespace` stand in a store this backend
    /// shares with other processes: a number every invalidation through any
    /// process moves before it drops anything (`RedisCache`: the
    /// namespace's generation in Redis). One trip.
    ///
    /// The default, `Ok(None)`, suits a backend whose invalidation state
    /// lives in this process only: the namespace's
    /// [`generation`](Namespace::generation) says it all. A layer that
    /// checks that nothing was invalidated between two reads
    /// ([`MasterPagesLayer`](crate::MasterPagesLayer)) reads both.
    async fn shared_generation(&self, namespace: &Arc<Namespace>) -> Result<Option<u64>> {
        let _ = namespace;
        Ok(None)
    }

    /// Whether this backend keeps what it is given. A backend that answers
    /// `false` must miss on every lookup; the cache layer then skips its
    /// fills altogether. The default is `true`; [`NoCache`] answers `false`.
    fn stores(&self) -> bool {
        true
    }
}

/// A cache that stores nothing: every lookup misses.
///
/// A stack over `NoCache` reads the master every time (concurrent reads of
/// one slot still share one master read), which makes it the parity check
/// for any other backend.
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

    fn peek(&self, _key: &str, _namespace: &Arc<Namespace>) -> Peek {
        Peek::Miss
    }

    async fn lookup(
        &self,
        _key: &str,
        _namespace: &Arc<Namespace>,
        _ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        Ok(None)
    }

    async fn fill(&self, _: &str, _: &Arc<Namespace>, _: Ticket, _: CachedSlot) -> Result<bool> {
        Ok(false)
    }

    fn stores(&self) -> bool {
        false
    }
}
