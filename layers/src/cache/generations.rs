//! The invalidation state of a backend: one [`Namespace`] per cache_key,
//! owned by the backend instance and shared by all its clones.
//!
//! # The one mechanism that fences fills: the namespace generation
//!
//! Every namespace (an escaped cache_key, see [`SlotKeys`](super::SlotKeys))
//! has a **generation**, a counter that every invalidation of the namespace
//! moves on *before* it drops anything, whether it drops the whole namespace
//! or a few of its slots. A read that misses takes a [`Ticket`]: the
//! generation it saw before it asked the master. Its fill lands only if the
//! generation is still the ticket's, checked by the backend atomically with
//! its store:
//!
//! - `MemCache` and `RedbCache`'s memory front check it inside moka's
//!   per-key `and_compute_with`, which also runs every per-slot drop;
//! - `RedbCache`'s file checks it inside the redb write transaction, and
//!   drops run in write transactions too (redb runs them one at a time);
//! - a Redis backend checks it inside the script that stores.
//!
//! Why that suffices. Take a fill with ticket `g` and an invalidation that
//! moves the generation to `g + 1` and then drops. Either the fill's atomic
//! check-and-store runs after the move (it sees `g + 1` and stores nothing),
//! or before it; then it also runs before the drop, which removes what it
//! stored. So once an invalidation has returned, no fill that started before
//! it can leave rows behind, whichever stack, clone or `Arc` the fill came
//! through: they all share this state.
//!
//! An invalidation moves the generation (and, when it drops the namespace
//! whole, the epoch) a second time when it *ends*, whatever its outcome. A
//! ticket taken while it was in progress may have come with slots read
//! before its drop: a backend that copies slots from one store into another
//! (a disk into its memory front, Redis into a process's memory) fences
//! that copy with such a ticket, and the second move refuses it (or, if the
//! copy landed first, leaves it in an epoch nobody reads).
//!
//! More things live beside the generation, each with one job; none of the
//! first four fences a fill:
//!
//! - the **epoch** moves only when the whole namespace is dropped. In-memory
//!   stores key slots by it, so dropping a namespace is O(1): the old slots
//!   become unreachable and eviction reclaims them.
//! - the **unclean** mark remembers an invalidation whose drop failed (the
//!   store may still hold slots it should have dropped). The cache layer
//!   reads no slot of an unclean namespace: it retries the invalidation first
//!   and reads the master without the cache while that fails. Only an
//!   invalidation that started after the failure clears it.
//! - the **flights**: master reads in progress, by slot and generation (and
//!   the ticket's token, which a backend shared by processes sets to its own
//!   generation, so that a read issued after another process's invalidation
//!   never joins a flight started before it), so that concurrent misses of
//!   one slot through any stack sharing the backend make one master read;
//!   and a count of fills, so that a read that missed
//!   just before another read's fill landed serves that fill instead of
//!   asking the master again.
//! - the **stale mark**: a time; slots fetched at or before it are never
//!   served as fresh (see [`Freshness`](super::Freshness#stale-marks)). It
//!   drops nothing and fences nothing: a fill it overlaps lands, stamped
//!   with the time its read started, so the mark covers it too.
//! - the **row index**: what each stored slot holds, for row-level drops
//!   ([`Namespace::start_row_drop`]). Its lock is part of the fence for
//!   those: a fill records its slot under it *before* its check-and-store,
//!   and a row-level drop moves the generation and takes the doomed slots
//!   under it, so either the drop sees the record or the fill sees the move.
//!   It vouches for nothing while a whole drop is in progress, after one
//!   failed, or after a slot was stored that it did not see.
//! - the **write counts**: writes through cache layers started and in
//!   progress, so that a write that overlapped another drops the whole
//!   namespace instead of its row's slots.
//!
//! # For backend authors
//!
//! A backend that owns a `Generations` returns it from
//! [`Cache::generations`](super::Cache::generations), and then must:
//!
//! 1. in [`invalidate_prefix`](super::Cache::invalidate_prefix), call
//!    [`Generations::start_drop`] *before* dropping anything, and
//!    [`DropGuard::finish`] with the outcome;
//! 2. in [`lookup`](super::Cache::lookup) and [`peek`](super::Cache::peek),
//!    look in the current epoch (in-memory stores) and never answer a slot
//!    dropped by an invalidation that has returned;
//! 3. in [`fill`](super::Cache::fill), store only if
//!    [`Ticket::is_current`] holds, atomically with respect to the drops of
//!    step 1 (in-memory stores key the slot by [`Ticket::epoch`]).
//!
//! A backend that also answers [`drops_rows`](super::Cache::drops_rows)
//! with `true` must, in addition:
//!
//! 4. in [`invalidate_rows`](super::Cache::invalidate_rows), call
//!    [`Namespace::start_row_drop`] (a whole drop if it answers `None`),
//!    drop exactly its slots from every store and memory copy it keeps,
//!    atomically with respect to fills of each slot, and settle with
//!    [`RowDrop::finish`];
//! 5. call [`Namespace::stored_unrecorded`] for every slot stored other
//!    than through `fill` (a raw `put`) and, on opening a persistent store,
//!    for every namespace it already holds.
//!
//! A backend that does not (a third-party backend implementing only `get`,
//! `put` and `invalidate_prefix`) gets a `Generations` from each cache layer
//! built over it; see the [module docs](super) for what that weakens.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::flight::Flights;
use super::row_index::{RowChange, RowIndex};
use super::slot::{Prefix, Scope};

/// The invalidation state of every namespace of one backend instance.
///
/// Clones of a backend share one `Generations` (hold it in the `Arc` the
/// clones share). Namespaces are created on first use and kept for the
/// backend's life: one small entry per cache_key ever used.
#[derive(Default)]
pub struct Generations {
    namespaces: RwLock<HashMap<Box<str>, Arc<Namespace>>>,
    next_id: AtomicU64,
}

impl Generations {
    /// No namespaces yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of `namespace` (created on first use).
    pub fn namespace(&self, namespace: &str) -> Arc<Namespace> {
        if let Some(ns) = self.get(namespace) {
            return ns;
        }
        let mut map = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        map.entry(namespace.into())
            .or_insert_with(|| {
                Arc::new(Namespace::new(
                    self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
                    namespace,
                ))
            })
            .clone()
    }

    /// The state of `namespace`, if it was ever used.
    pub fn get(&self, namespace: &str) -> Option<Arc<Namespace>> {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
    }

    /// The namespaces a raw `invalidate_prefix(prefix)` touches (see
    /// [`Prefix`]), of those ever used: one never used has no fill in flight
    /// to fence.
    pub fn resolve(&self, prefix: &Prefix) -> Vec<Arc<Namespace>> {
        match &prefix.namespaces {
            Some(names) => names.iter().filter_map(|name| self.get(name)).collect(),
            None => self
                .namespaces
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect(),
        }
    }

    /// The names of the namespaces ever used whose name starts with
    /// `namespace_prefix`.
    pub fn names_starting_with(&self, namespace_prefix: &str) -> Vec<String> {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|name| name.starts_with(namespace_prefix))
            .map(|name| name.to_string())
            .collect()
    }

    /// Start an invalidation of every namespace ever used whose name starts
    /// with `namespace_prefix`, whole (see
    /// [`Cache::invalidate_cache_keys_starting_with`](super::Cache::invalidate_cache_keys_starting_with)):
    /// moves their generations and epochs *now*, before the backend drops
    /// anything. Settle it with [`DropGuard::finish`].
    pub fn start_group_drop(&self, namespace_prefix: &str) -> DropGuard {
        let names = self.names_starting_with(namespace_prefix);
        let started = names
            .iter()
            .filter_map(|name| self.get(name))
            .map(|ns| {
                let generation = ns.start_drop(true);
                (ns, generation)
            })
            .collect();
        DropGuard {
            started,
            prefix: Prefix {
                namespaces: Some(names),
                scope: Scope::Whole,
            },
            whole: true,
        }
    }

    /// Start a raw invalidation of `prefix` (see [`Generations::resolve`]):
    /// moves the generation of every namespace it touches *now*, before the
    /// backend drops anything, and the epoch of those it drops whole. A
    /// backend that cannot drop part of a namespace passes
    /// `partial_drops = false` and drops every touched namespace whole (a
    /// cache may always drop more than asked). Settle it with
    /// [`DropGuard::finish`].
    pub fn start_drop(&self, prefix: &str, partial_drops: bool) -> DropGuard {
        let prefix = Prefix::parse(prefix);
        let whole = !partial_drops || prefix.scope == Scope::Whole;
        let started = self
            .resolve(&prefix)
            .into_iter()
            .map(|ns| {
                let generation = ns.start_drop(whole);
                (ns, generation)
            })
            .collect();
        DropGuard {
            started,
            prefix,
            whole,
        }
    }
}

impl fmt::Debug for Generations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.namespaces.read().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("Generations")
            .field("namespaces", &count)
            .finish()
    }
}

/// An invalidation in progress: the generations it moved, to be settled
/// with [`DropGuard::finish`].
#[must_use = "settle the invalidation with `finish`"]
#[derive(Debug)]
pub struct DropGuard {
    started: Vec<(Arc<Namespace>, u64)>,
    prefix: Prefix,
    whole: bool,
}

impl DropGuard {
    /// What the prefix covers.
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// The namespaces this invalidation touches.
    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<Namespace>> {
        self.started.iter().map(|(ns, _)| ns)
    }

    /// Settle the invalidation: on success its namespaces are clean again
    /// (unless an invalidation that started later failed); on failure they
    /// are unclean until a later invalidation succeeds.
    ///
    /// A guard dropped without `finish` (its future was cancelled while the
    /// backend dropped) settles as a failure: what it should have dropped
    /// may remain.
    pub fn finish<T, E>(mut self, outcome: &Result<T, E>) {
        self.settle(outcome.is_ok());
    }

    fn settle(&mut self, dropped: bool) {
        for (ns, generation) in std::mem::take(&mut self.started) {
            ns.end_drop(generation, self.whole, dropped);
        }
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.settle(false);
    }
}

/// The invalidation state of one namespace (one cache_key) in one backend.
pub struct Namespace {
    id: u64,
    name: Box<str>,
    /// Moves on every invalidation, before anything is dropped: the fence.
    generation: AtomicU64,
    /// Moves when the whole namespace is dropped: in-memory slot keys.
    epoch: AtomicU64,
    /// The generation of the latest failed invalidation not yet covered by a
    /// later successful one; 0 when clean.
    unclean: AtomicU64,
    /// Fills stored so far.
    fills: AtomicU64,
    /// The latest stale mark, in nanoseconds since the Unix epoch (0: none):
    /// slots fetched at or before it are never fresh (see
    /// [`Freshness`](super::Freshness#stale-marks)).
    stale_before: AtomicU64,
    /// Master reads in progress.
    pub(crate) flights: Mutex<Flights>,
    /// What each stored slot holds, for row-level drops; locked around
    /// every generation move, so that a fill recorded before its store is
    /// seen by every row-level drop its store does not lose to.
    rows: Mutex<RowIndex>,
    /// Writes through cache layers: started so far (high 32 bits) and in
    /// progress (low 32 bits), in one word so that a write reads both at
    /// once. A write that overlapped another does not drop at row level.
    writes: AtomicU64,
}

impl Namespace {
    fn new(id: u64, name: &str) -> Self {
        Self {
            id,
            name: name.into(),
            generation: AtomicU64::new(1),
            epoch: AtomicU64::new(1),
            unclean: AtomicU64::new(0),
            fills: AtomicU64::new(0),
            stale_before: AtomicU64::new(0),
            flights: Mutex::new(Flights::default()),
            rows: Mutex::new(RowIndex::default()),
            writes: AtomicU64::new(0),
        }
    }

    /// A number that identifies this namespace within its [`Generations`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The namespace (the escaped cache_key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw prefix that covers this whole namespace, `<namespace>/` (see
    /// [`Cache::invalidate_prefix`](super::Cache::invalidate_prefix)).
    pub fn whole_prefix(&self) -> String {
        format!("{}/", self.name)
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Mark every slot fetched at or before `at` as stale: such slots are
    /// served only as stale (and refreshed) or not at all, never as fresh.
    /// Marks only move forward.
    pub fn mark_stale(&self, at: SystemTime) {
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
            .max(1);
        self.stale_before.fetch_max(nanos, Ordering::SeqCst);
    }

    /// The latest stale mark, if any.
    pub fn stale_before(&self) -> Option<SystemTime> {
        match self.stale_before.load(Ordering::SeqCst) {
            0 => None,
            nanos => Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos)),
        }
    }

    /// The current epoch (moves only when the whole namespace is dropped).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// A ticket for a fill: where invalidations stand now. Take it before
    /// asking the master (the cache layer takes it before the lookup).
    pub fn ticket(&self) -> Ticket {
        // Epoch first: an invalidation moves the generation first, so a
        // ticket that sees the new epoch also sees the new generation.
        let epoch = self.epoch();
        Ticket {
            generation: self.generation(),
            epoch,
            token: None,
        }
    }

    /// Whether an invalidation failed and no later one has succeeded yet.
    pub fn is_unclean(&self) -> bool {
        self.unclean.load(Ordering::SeqCst) != 0
    }

    /// Whether a master read of slot `key` at `generation` is in flight
    /// (started from a memory peek: no backend token), which refreshes it.
    pub(crate) fn refreshing(&self, key: &str, generation: u64) -> bool {
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .has(key, generation, None)
    }

    /// How many fills were stored in this namespace so far.
    pub fn fills(&self) -> u64 {
        self.fills.load(Ordering::SeqCst)
    }

    /// Count a stored fill (the cache layer does this).
    pub(crate) fn filled(&self) {
        self.fills.fetch_add(1, Ordering::SeqCst);
    }

    /// Start an invalidation of this namespace (whole, or some of its
    /// slots): move the generation (and, for a whole drop, the epoch).
    /// Returns the new generation; settle the invalidation with
    /// [`Namespace::end_drop`].
    pub fn start_drop(&self, whole: bool) -> u64 {
        if !whole {
            return self.advance(false);
        }
        let mut rows = self.row_index();
        let generation = self.advance(true);
        rows.whole_drop_started();
        generation
    }

    fn advance(&self, whole: bool) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if whole {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        generation
    }

    fn row_index(&self) -> std::sync::MutexGuard<'_, RowIndex> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// End the invalidation that [`started`](Namespace::start_drop) at
    /// `generation`: move the generation (and, whole, the epoch) again, so
    /// that nothing copied under a ticket taken while it was in progress
    /// survives it, and mark the namespace clean (`dropped`) or unclean.
    pub fn end_drop(&self, generation: u64, whole: bool, dropped: bool) {
        if dropped {
            self.cleared(generation);
        } else {
            self.mark_unclean(generation);
        }
        if whole {
            let mut rows = self.row_index();
            self.advance(true);
            rows.whole_drop_ended(dropped);
        } else {
            self.advance(false);
        }
    }

    /// Start a row-level invalidation: if this namespace's row index
    /// vouches for every slot the store may answer, move the generation
    /// (fencing every fill in flight, as any invalidation does) and answer
    /// the slots `change` can make wrong (see [`RowChange`] for which);
    /// drop exactly those, then settle with [`RowDrop::finish`]. `None`
    /// (nothing moved) when the index cannot tell: drop the whole namespace
    /// instead.
    ///
    /// The index vouches only after a cache layer enabled it
    /// ([`CacheLayer::with_row_invalidation`](super::CacheLayer::with_row_invalidation))
    /// before any slot was stored unrecorded: a raw `put`
    /// ([`Namespace::stored_unrecorded`]), slots an earlier process left in
    /// a persistent store, more slots than it keeps, or a whole drop that
    /// failed each make it stop vouching until a whole drop succeeds.
    pub fn start_row_drop(self: &Arc<Self>, change: &RowChange) -> Option<RowDrop> {
        let mut rows = self.row_index();
        if !rows.vouches() {
            return None;
        }
        // Under the index lock: a fill records its slot under it before it
        // checks its ticket, so either we see the record or it sees this
        // move (and stores nothing).
        let generation = self.advance(false);
        let slots = rows.take(change);
        Some(RowDrop {
            namespace: self.clone(),
            generation,
            slots,
            settled: false,
        })
    }

    /// Record that a slot holding `rows` is about to be stored (the cache
    /// layer calls this before every fill, whether or not row-level drops
    /// are on: a fill the index never saw stops it from vouching).
    pub(crate) fn record_fill<'a>(&self, slot: &str, rows: impl Iterator<Item = &'a str>) {
        self.row_index().record(slot, rows);
    }

    /// Turn the row index on (a cache layer with row-level invalidation
    /// does). It vouches at once only if no slot of this namespace was ever
    /// stored.
    pub(crate) fn enable_row_index(&self) {
        let mut rows = self.row_index();
        let nothing_stored = self.fills() == 0;
        rows.enable(nothing_stored);
    }

    /// A slot is being stored that the row index does not see (a raw
    /// [`Cache::put`](super::Cache::put)), or the store holds slots from
    /// before this process (call it when a persistent backend opens over
    /// them): row-level drops fall back to whole ones until a whole drop
    /// succeeds.
    pub fn stored_unrecorded(&self) {
        self.row_index().unrecorded_store();
    }

    /// A write through a cache layer starts: whether another one is in
    /// progress, and this write's place among those started.
    pub(crate) fn write_started(&self) -> WriteSpan {
        let before = self.writes.fetch_add(WRITE_STARTED | 1, Ordering::SeqCst);
        WriteSpan {
            others: before & WRITES_ACTIVE != 0,
            number: (before >> 32).wrapping_add(1) & WRITES_ACTIVE,
        }
    }

    /// Whether the write that started as `span` overlapped no other write
    /// so far (call it after the master answered, before invalidating).
    pub(crate) fn write_alone(&self, span: &WriteSpan) -> bool {
        !span.others && self.writes.load(Ordering::SeqCst) >> 32 == span.number
    }

    /// The write that started as `span` is over (invalidated or not).
    pub(crate) fn write_ended(&self) {
        self.writes.fetch_sub(1, Ordering::SeqCst);
    }

    /// The invalidation that started at `generation` dropped what it had to:
    /// it covers failures of invalidations started before it, not of later
    /// ones.
    fn cleared(&self, generation: u64) {
        let _ = self
            .unclean
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |at| {
                (at != 0 && at < generation).then_some(0)
            });
    }

    /// The invalidation that started at `generation` failed (or a write that
    /// moved it never settled): the store may hold slots it should not.
    fn mark_unclean(&self, generation: u64) {
        self.unclean.fetch_max(generation, Ordering::SeqCst);
    }

    /// Distrust the store at once: start a whole invalidation and mark it
    /// failed. Used when a write ends without an answer (a panic, a dropped
    /// future) while the master may have applied it.
    pub fn poison(&self) {
        let generation = self.start_drop(true);
        self.end_drop(generation, true, false);
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("generation", &self.generation())
            .field("epoch", &self.epoch())
            .field("unclean", &self.is_unclean())
            .finish()
    }
}

/// A row-level invalidation in progress (see
/// [`Namespace::start_row_drop`]): drop its [`slots`](RowDrop::slots), then
/// settle it with [`RowDrop::finish`].
#[must_use = "drop the slots, then settle with `finish`"]
pub struct RowDrop {
    namespace: Arc<Namespace>,
    generation: u64,
    slots: Vec<Arc<str>>,
    settled: bool,
}

impl RowDrop {
    /// The slots to drop, within the namespace (after `<namespace>/`).
    pub fn slots(&self) -> &[Arc<str>] {
        &self.slots
    }

    /// Settle it: on failure the namespace is unclean (reads bypass the
    /// backend) until an invalidation started later succeeds.
    ///
    /// A success does not clean a namespace an earlier failure left
    /// unclean: only a whole drop removes what that one failed to. A
    /// `RowDrop` dropped without `finish` (its future was cancelled while
    /// the backend dropped) poisons the namespace: its slots may remain in
    /// some store, and the index no longer lists them.
    pub fn finish<T, E>(mut self, outcome: &Result<T, E>) {
        self.settled = true;
        let namespace = &self.namespace;
        if outcome.is_err() {
            namespace.mark_unclean(self.generation);
            // The index no longer lists the slots that may remain.
            namespace.row_index().forget();
        }
        namespace.advance(false);
    }
}

impl Drop for RowDrop {
    fn drop(&mut self) {
        if !self.settled {
            self.namespace.poison();
        }
    }
}

impl fmt::Debug for RowDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowDrop")
            .field("namespace", &self.namespace.name())
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// One write started, in [`Namespace`]'s `writes` word (the high half).
const WRITE_STARTED: u64 = 1 << 32;
/// The writes in progress, in the same word (the low half).
const WRITES_ACTIVE: u64 = (1 << 32) - 1;

/// Where a write stood among the writes of its namespace when it started.
#[derive(Debug)]
pub(crate) struct WriteSpan {
    others: bool,
    number: u64,
}

/// Where invalidations of a namespace stood when a read missed: what its
/// fill must still find for its rows to be stored. Take it with
/// [`Namespace::ticket`] before the master is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    epoch: u64,
    token: Option<u64>,
}

impl Ticket {
    /// The generation the read saw.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The epoch the read saw (in-memory stores key the fill by it).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What the backend recorded while looking (see
    /// [`Ticket::set_token`]), if anything.
    pub fn token(&self) -> Option<u64> {
        self.token
    }

    /// Record backend state the fill must be fenced by, learnt while looking
    /// (for a backend shared by several processes: the generation its store
    /// held). Only the backend that set it reads it back.
    pub fn set_token(&mut self, token: u64) {
        self.token = Some(token);
    }

    /// Whether no invalidation of `namespace` has started in this process
    /// since the ticket was taken. Backends check this atomically with their
    /// store.
    pub fn is_current(&self, namespace: &Namespace) -> bool {
        namespace.generation() == self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace() -> Arc<Namespace> {
        let generations = Generations::new();
        let ns = generations.namespace("n");
        ns.enable_row_index();
        ns
    }

    #[test]
    fn a_row_drop_cancelled_before_it_settles_poisons_the_namespace() {
        let ns = namespace();
        ns.record_fill("list/-/p1x10", ["a"].into_iter());
        let drop = ns
            .start_row_drop(&RowChange::Updated("a".into()))
            .expect("the index vouches");
        assert_eq!(drop.slots().len(), 1);
        let epoch = ns.epoch();
        std::mem::drop(drop);
        assert!(ns.is_unclean(), "reads bypass the store");
        assert!(ns.epoch() > epoch, "memory copies are out of reach");
        assert!(
            ns.start_row_drop(&RowChange::Updated("a".into())).is_none(),
            "the index no longer vouches"
        );
    }

    #[test]
    fn a_whole_drop_cancelled_before_it_settles_leaves_the_namespace_unclean() {
        let generations = Generations::new();
        let ns = generations.namespace("n");
        ns.enable_row_index();
        let guard = generations.start_drop("n/", true);
        std::mem::drop(guard);
        assert!(ns.is_unclean());
        assert!(ns.start_row_drop(&RowChange::Updated("a".into())).is_none());
        // A whole drop that succeeds makes it vouch again.
        generations.start_drop("n/", true).finish::<(), ()>(&Ok(()));
        assert!(!ns.is_unclean());
        assert!(ns.start_row_drop(&RowChange::Updated("a".into())).is_some());
    }

    #[test]
    fn overlapping_writes_are_never_alone() {
        let ns = namespace();
        let first = ns.write_started();
        let second = ns.write_started();
        assert!(!ns.write_alone(&first), "another started after it");
        assert!(!ns.write_alone(&second), "another was in progress");
        ns.write_ended();
        ns.write_ended();
        let third = ns.write_started();
        assert!(ns.write_alone(&third));
        ns.write_ended();
    }
}
