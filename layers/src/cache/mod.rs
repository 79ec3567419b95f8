//! Caching reads, invalidating on writes.
//!
//! [`CacheLayer`] puts a [`Cache`] backend in front of a service. Unlike a
//! generic response cache it knows the request vocabulary: it caches the
//! reads that have a stable identity and drops a whole cache_key when a write
//! succeeds.
//!
//! # What is cached
//!
//! - [`Request::List`](crate::Request::List): one slot per page *and* page
//!   size, plus one for the unpaginated list;
//! - [`Request::Get`](crate::Request::Get): one slot per id (a missing row is
//!   not cached);
//! - [`Request::Count`](crate::Request::Count): one slot per view, never
//!   paginated.
//!
//! Equality conditions are part of every slot, so a conditioned view is cached
//! apart from the plain one and dropped with its cache_key. Views with an
//! opaque handle and [`Request::GetSome`](crate::Request::GetSome) pass
//! through. [`SlotKeys`] documents the key format.
//!
//! # Guarantees
//!
//! A read answers with what the inner service (the master) held at some
//! instant no earlier than the last write acknowledged, or invalidation
//! done, before the read started. In detail:
//!
//! - **A write invalidates before it answers.** A write that succeeds drops
//!   every slot of the cache_key before its response is returned, so a read
//!   issued after the response never sees a pre-write slot. A write that
//!   fails leaves the cache as it was.
//! - **No stale fill.** A read that missed and is still waiting on the inner
//!   service when an invalidation starts (a write through any stack sharing
//!   the backend and cache_key, an [`Invalidator`] call, an event handled by
//!   [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer)) does not
//!   install the rows it fetched: they may predate the change. It still
//!   answers with them (it overlapped the change). Reads issued after the
//!   invalidation miss, and never join a read started before it: they answer
//!   with rows fetched after it.
//! - **Single flight.** Concurrent misses of one slot in one stack make one
//!   inner read, on a task of its own, and every waiter gets its result. An
//!   error reaches every waiter (each gets a `VantageError` with the same
//!   message and the shared original as its source) and is not cached: the
//!   next read asks again. A waiter that gives up (drops its future) does not
//!   cancel the read for the others; the read finishes and fills the slot
//!   even if every waiter gave up. A read that missed just before another
//!   read's fill landed serves that fill instead of reading again. Separate
//!   stacks sharing a cache_key each make their own read.
//! - **Outages of the inner service.** Warm slots keep serving while it
//!   fails: the layer never asks it for a slot it holds. A cold read returns
//!   its error as soon as it fails; the layer adds no retries and no
//!   timeouts (an inner read that hangs is waited on: put a timeout below
//!   the layer if the master can hang).
//! - **Cache faults cost speed, never correctness.** The backend is
//!   disposable:
//!   - a `get` that fails, or answers a slot that does not decode or has the
//!     wrong shape for its kind, is a miss (`warn!`); the fill replaces it;
//!   - a `put` that fails still returns the inner service's answer
//!     (`warn!`);
//!   - a [`Cache::generation`] that fails makes that read answer from the
//!     inner service without storing (`warn!`); single flight still holds;
//!   - an invalidation that fails (after a write, an event or an
//!     `Invalidator` call) **poisons** the cache_key: the write itself still
//!     succeeds, but every stack sharing the backend and cache_key stops
//!     using the backend for it. Its reads go to the inner service, store
//!     nothing, and each first retries the invalidation (`warn!` per read).
//!     The poison lifts when an invalidation started after the failure
//!     succeeds. A write that never settles (it panics, or its future is
//!     dropped while the master may have applied it) poisons the same way.
//!
//! # Sharing a backend
//!
//! Stacks (`LiveTable`s) given the same `Arc<dyn Cache>` (clones of one
//! `Arc`) and the same cache_key share slots, and in the process they share
//! one *fence* for the cache_key: an epoch bumped at the start of every
//! invalidation any of them makes, and the poison. A fill checks the epoch
//! before it stores, and reads join only reads started at the current epoch,
//! so a read issued after any sharer's invalidation never gets rows fetched
//! before it, and a failed invalidation is seen by every sharer.
//!
//! The check and the store are made atomic by the backend: a fill stores
//! with [`Cache::put_if_generation`], at the [`Cache::generation`] it read
//! before asking the inner service, and the backend refuses it if an
//! invalidation reached it since. This also fences stacks that reach one
//! store through different `Arc`s. `MemCache` and `RedbCache` implement
//! both.
//!
//! The trait's defaults (generation always 0, unconditional store) are for
//! backends that cannot do this. With them a fill can still land just after
//! an invalidation that started after the fill's epoch check; the layer
//! re-checks the epoch after every store and drops such a slot again (or
//! poisons the cache_key if it cannot), so a read in that short window may
//! be served the older rows. Stacks that reach such a store through
//! different `Arc`s are not fenced at all, and the poison is never shared
//! beyond one `Arc`.
//!
//! # Tracing
//!
//! Every cacheable read logs one `debug!` with `cache_key`, `slot` and an
//! `outcome`: `hit`, or `miss` followed by `coalesced` (it joined a master
//! read in flight) or, once the master answered, `populated` (the rows were
//! stored). A successful write logs `outcome="invalidated"`. Uncacheable
//! reads log `outcome="bypass"`. Cache faults are `warn!`s (the read or write
//! still succeeds). Each backend call runs in a `DEBUG` span of its own,
//! `cache.get`, `cache.generation`, `cache.put` (field `slot`) or
//! `cache.invalidate_prefix` (field `prefix`), so a subscriber that times
//! spans shows a slow backend, whichever backend it is. The single-flight
//! master read runs in the span of the read that started it.
//!
//! # Counters
//!
//! [`CacheLayer::stats`] gives the layer's [`Stats`](crate::Stats): hits,
//! misses, coalesced reads and master reads are counted on the read path,
//! writes where they settle (here: the layer sees every write's result), and
//! every successful invalidation of the cache_key. Counting is one relaxed
//! atomic add.
//!
//! # Example
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::{CacheLayer, NoCache, Request, TableService, View};
//! # async fn demo(master: vantage_table::any::AnyTable) -> vantage_core::Result<()> {
//! use tower::{ServiceBuilder, ServiceExt};
//! let stack = ServiceBuilder::new()
//!     .layer(CacheLayer::new(Arc::new(NoCache), "clients"))
//!     .service(TableService::new(master));
//! let rows = stack.oneshot(Request::List(View::new())).await?.into_rows()?;
//! # let _ = rows; Ok(()) }
//! ```

mod backend;
mod fence;
mod invalidator;
mod layer;
mod service;
mod slot;

pub use self::backend::{Cache, CachedRows, NoCache};
pub use self::invalidator::Invalidator;
pub use self::layer::CacheLayer;
pub use self::service::CacheService;
pub use self::slot::{split_key, SlotKeys};
