//! Caching reads, invalidating on writes.
//!
//! [`CacheLayer`] puts a [`Cache`] backend in front of a service. Unlike a
//! generic response cache it knows the request vocabulary: it caches the
//! reads that have a stable identity and drops a whole cache_key when a write
//! succeeds.
//!
//! # What is cached
//!
//! Each slot holds a typed answer ([`SlotValue`]), stored and handed out
//! behind `Arc`s: a hit shares the rows, it never copies them.
//!
//! - [`Request::List`](crate::Request::List): one slot per page *and* page
//!   size, plus one for the unpaginated list;
//! - [`Request::Get`](crate::Request::Get): one slot per id, holding the row
//!   or the fact that there is none;
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
//! done, before the read started, through any stack sharing the backend
//! instance (any clone of it, through any number of `Arc`s). In detail:
//!
//! - **A write invalidates before it answers.** A write that succeeds drops
//!   every slot of the cache_key before its response is returned, so a read
//!   issued after the response never sees a pre-write slot. A write that
//!   fails leaves the cache as it was. With
//!   [row-level invalidation](CacheLayer::with_row_invalidation), a write
//!   that names a row drops only the slots that row can change (the
//!   [`RowChange`] docs list them, and why every slot kept still answers what
//!   the master would), falling back to the whole cache_key wherever that
//!   cannot be vouched for.
//! - **No stale fill.** A read that missed and is still waiting on the inner
//!   service when an invalidation starts (a write through any stack sharing
//!   the backend and cache_key, an [`Invalidator`] call, an event handled by
//!   [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer)) does not
//!   install the rows it fetched: they may predate the change. It still
//!   answers with them (it overlapped the change). Reads issued after the
//!   invalidation miss, and never join a read started before it: they answer
//!   with rows fetched after it.
//! - **Single flight.** Concurrent misses of one slot through any stacks
//!   sharing the backend and cache_key in a process make one inner read, on
//!   a task of its own, and every waiter gets its result. An error reaches
//!   every waiter (each gets a [`SharedError`](error::SharedError) around the
//!   original) and is not cached: the next read asks again. A waiter that
//!   gives up (drops its future) does not cancel the read for the others;
//!   the read finishes and fills the slot even if every waiter gave up. A
//!   read that missed just before another read's fill landed serves that
//!   fill instead of reading again.
//!   Reads whose tickets carry different tokens (a backend shared by
//!   processes records its own generation there: another process
//!   invalidated in between) never share a flight. Across processes, a
//!   shared backend provides its own coalescing (`RedisCache`: leases).
//! - **Shared, immutable slots.** A hit hands out the stored `Arc`s; a page
//!   already handed out never changes under its holder (a later fill stores
//!   a new one).
//! - **Outages of the inner service.** Warm slots keep serving while it
//!   fails: the layer never asks it for a slot it holds. A cold read returns
//!   its error as soon as it fails; the layer adds no retries and no
//!   timeouts (an inner read that hangs is waited on: put a timeout below
//!   the layer if the master can hang).
//! - **Freshness** (off by default). With a max age, a slot older than it
//!   is a miss; with a stale-while-revalidate window too, a slot within the
//!   window past its max age is served at once and refreshed in the
//!   background, by one master read per slot at a time (it is the slot's
//!   flight: misses join it), fenced like any fill. Age alone never makes a
//!   slot wrong (every change still drops it); only a stale mark (a
//!   (re)subscribe, with a window set) serves a slot that may predate a
//!   change nobody reported, and only as stale. See [`Freshness`].
//! - **Cache faults cost speed, never correctness.** The backend is
//!   disposable:
//!   - a lookup that fails, or answers a slot of the wrong kind, is a miss
//!     (`warn!`); the fill replaces it;
//!   - a fill that fails still returns the inner service's answer (`warn!`);
//!   - an invalidation that fails (after a write, an event or an
//!     [`Invalidator`] call) leaves the cache_key **unclean** in the
//!     backend: the write itself still succeeds, but every stack sharing the
//!     backend stops reading it for that cache_key. Its reads go to the
//!     inner service, store nothing, and each first retries the
//!     invalidation (`warn!` per read). It is clean again when an
//!     invalidation started after the failure succeeds. A write that never
//!     settles (it panics, or its future is dropped while the master may
//!     have applied it) leaves it unclean the same way.
//!
//! # Where the invalidation state lives
//!
//! In the backend instance: a [`Generations`] that all its clones share.
//! One mechanism fences fills, the namespace *generation*; [`Generations`]
//! says how, and why it suffices. A read costs one trip to the backend
//! ([`Cache::peek`] from memory, or [`Cache::lookup`]), and a miss one more
//! to fill ([`Cache::fill`]).
//!
//! A backend that implements only the seed's `get`, `put` and
//! `invalidate_prefix` owns no state; each `CacheLayer` built over it then
//! keeps a `Generations` of its own, with two consequences: stacks built
//! from *different* layers over it are not fenced against each other (a
//! fill through one may land after an invalidation through another) and do
//! not share single flight or the unclean mark; and within one layer, since
//! the backend cannot check and store atomically, a fill that an
//! invalidation overtakes is dropped again right after it lands (a read in
//! that instant may be served it). `MemCache`, `RedbCache` and `NoCache`
//! have none of these limits.
//!
//! # Tracing
//!
//! Every cacheable read logs one `debug!` with `cache_key`, `slot` and an
//! `outcome`: `hit`, or `miss` followed by `coalesced` (it joined a master
//! read in flight) or, once the master answered, `populated` (the answer was
//! stored). A stale hit logs `outcome="stale"` and, if it starts the slot's
//! refresh, `outcome="refresh"`; an expired slot is a `miss`. A successful
//! write logs `outcome="invalidated"` (with `rows`, the row's id, when it
//! dropped only that row's slots; those run in a `cache.invalidate_rows`
//! span). Uncacheable
//! reads log `outcome="bypass"`. Cache faults are `warn!`s (the read or write
//! still succeeds). Each backend call that may wait runs in a `DEBUG` span of
//! its own, `cache.lookup`, `cache.fill` (field `slot`) or
//! `cache.invalidate_prefix` (field `prefix`), so a subscriber that times
//! spans shows a slow backend, whichever backend it is (a hit answered from
//! memory has none: it does not wait). The single-flight master read runs in
//! the span of the read that started it.
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
//! # async fn demo(master: vantage_table::any::AnyTable) -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt};
//! let stack = ServiceBuilder::new()
//!     .layer(CacheLayer::new(Arc::new(NoCache), "clients"))
//!     .service(TableService::new(master));
//! let rows = stack.oneshot(Request::List(View::new())).await?.into_rows()?;
//! # let _ = rows; Ok(()) }
//! ```

mod backend;
mod cached;
mod codec;
pub mod error;
mod flight;
mod freshness;
pub mod future;
mod generations;
mod group;
mod invalidator;
mod layer;
mod legacy;
mod read;
mod row_index;
mod service;
mod shared;
mod slot;
mod write;

pub use self::backend::{Cache, NoCache, Peek};
pub use self::cached::{CachedRows, CachedSlot, SlotKind, SlotValue, COUNT_ROW};
pub use self::freshness::{Clock, Freshness, ManualClock, SystemClock};
pub use self::generations::{DropGuard, Generations, Namespace, RowDrop, Ticket};
pub use self::group::CacheGroup;
pub use self::invalidator::Invalidator;
pub use self::layer::CacheLayer;
pub use self::row_index::RowChange;
pub use self::service::CacheService;
pub use self::slot::{split_key, Prefix, Scope, SlotKeys};
