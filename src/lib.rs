//! vantage-live: a cached, non-blocking [`LiveTable`] over any Vantage
//! `AnyTable`.
//!
//! A `LiveTable` wraps a table (the *master*) with a local cache, so that
//! scrolling a list does not wait on the network for every page. Reads hit the
//! cache first and fall through to the master, filling the cache on the way
//! back; writes go to the master and drop the cached slots of the table's
//! cache_key. `LiveTable` implements the standard value-set traits and
//! `TableLike`, so `AnyTable::from_table_like(live)` is a drop-in for the
//! master: generic code cannot tell.
//!
//! ```
//! use std::sync::Arc;
//! use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
//! use vantage_live::{Cache, LiveTable, MemCache};
//! use vantage_table::{any::AnyTable, table::Table};
//! use vantage_types::{EmptyEntity, Record};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> vantage_core::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! // A master: here an embedded redb table; any AnyTable works.
//! let db = vantage_redb::Redb::create(dir.path().join("shop.redb"))?;
//! let products = Table::<_, EmptyEntity>::new("product", db)
//!     .with_id_column("id")
//!     .with_column_of::<String>("name");
//! let master = AnyTable::from_table(products);
//! let mut bun = Record::new();
//! bun.insert("name".to_string(), ciborium::Value::Text("Bun".into()));
//! master.insert_value(&"bun".to_string(), &bun).await?;
//!
//! // Wrap it. "products" is the cache key: the caller's to choose and own.
//! let cache = Arc::new(MemCache::new());
//! let live = LiveTable::new(master, "products", cache.clone());
//!
//! let rows = live.list_values().await?; // miss: read from the master, cached
//! assert_eq!(rows.len(), 1);
//! assert!(cache.get(&live.page_cache_key(None)).await?.is_some());
//! let again = live.list_values().await?; // hit: served from the cache
//! assert_eq!(rows, again);
//!
//! // Shared reads hand out the cached rows themselves, behind an `Arc`: no
//! // copy, whatever the page size. They never change under their holder.
//! let shared = live.list_shared().await?;
//! assert_eq!(*shared, rows);
//! assert!(Arc::ptr_eq(&shared, &live.list_shared().await?));
//!
//! // A write goes to the master and drops the cache_key's slots.
//! live.insert_value(&"roll".to_string(), &bun).await?;
//! assert!(cache.get(&live.page_cache_key(None)).await?.is_none());
//! assert_eq!(live.list_values().await?.len(), 2);
//!
//! // Anywhere an AnyTable goes:
//! let any = AnyTable::from_table_like(live);
//! assert_eq!(any.list_values().await?.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # How it is built
//!
//! A `LiveTable` is a pre-assembled [tower](https://docs.rs/tower) stack from
//! [`vantage_live_layers`] (see [`LiveStack`]); reads and writes are
//! [`Request`]s. Outermost first:
//!
//! 1. [`TracingLayer`]: a span per request, one `ERROR` per failed request;
//! 2. [`InvalidateOnEventLayer`] (with [`LiveTable::with_live_stream`]): a
//!    background task turns stream events into invalidations;
//! 3. `WriteQueueLayer`: writes one at a time, in order, detached from their
//!    callers; reads pass straight by;
//! 4. [`PublishInvalidationsLayer`] (with [`LiveTable::with_publisher`]):
//!    each acknowledged write is published to other processes, on the
//!    write's own task after its invalidation; without a publisher, a
//!    pass-through;
//! 5. [`CacheLayer`]: reads served from the cache or filled (single flight,
//!    fenced against invalidations); successful writes invalidate before
//!    they answer;
//! 6. [`TableService`]: the master (or the custom write target).
//!
//! The order carries the guarantees: the queue sits above the cache so a
//! write's invalidation runs on the write's own detached task. Compose your
//! own stack from the same layers with `tower::ServiceBuilder`.
//!
//! # Shared reads
//!
//! The value-set traits answer owned rows, so every hit copies them once, at
//! the edge. [`LiveTable::list_shared`] and [`LiveTable::get_shared`] answer
//! the same views, from the same slots, with the same guarantees, as `Arc`s
//! of the rows the cache holds: a hit costs the same for one row or a
//! thousand. UI code that re-reads the pages it scrolls through should use
//! them.
//!
//! # Cache backends
//!
//! [`MemCache`] (moka, in memory), [`RedbCache`] (one redb file on disk,
//! survives restarts, with a memory front) and [`NoCache`] (stores nothing:
//! the parity check). Implement [`Cache`] for your own: the seed's `get`,
//! `put` and `invalidate_prefix` suffice (with weaker fencing, see
//! [`vantage_live_layers::cache`]); a backend that owns its invalidation
//! state ([`cache::Generations`]) gets the full guarantees.
//! With the `redis` feature, `RedisCache` (one cache shared by many
//! processes, with leases against herds) and `TieredCache` (a memory tier in
//! each process in front of it).
//!
//! # Scale-out
//!
//! Several processes share one `RedisCache`; with `TieredCache`, each keeps
//! a memory tier coherent through an invalidation fan-out
//! ([`LiveTable::with_publisher`] out, [`LiveTable::with_live_stream`] in;
//! `NatsFanout` with the `nats` feature). The README's "Scale-out" section
//! states the cross-process guarantees with their bounds and a capacity
//! model.
//!
//! # Live events
//!
//! [`LiveTable::with_live_stream`] keeps the cache honest without polling: a
//! [`LiveStream`] (your own, [`ManualLiveStream`], `PgNotifyLiveStream` for
//! PostgreSQL `LISTEN`/`NOTIFY` with the `postgres` feature, or
//! `SurrealLiveStream` for SurrealDB `LIVE SELECT` with the `surrealdb`
//! feature) reports changes made anywhere, and every [`LiveEvent`] drops the
//! cache_key.
//!
//! # Observability
//!
//! The library emits [`tracing`](https://docs.rs/tracing) spans and events
//! and installs no subscriber. Each request runs in a `read` or `write` span
//! ([`TracingLayer`], outermost in the stack) with `cache_key`, `op`, `page`
//! and `ipp` or `id`; below it the cache logs each read's `outcome` (`hit`,
//! `miss`, `populated`, `coalesced`) and each write's `invalidated`, the
//! write queue applies a write in a `queue_worker` span inside its caller's
//! span, the live-stream task handles each event in a `live_event` span, and
//! every cache backend call has a `cache.*` span. `error!` is logged once
//! per request that returns `Err`; record bodies only at `trace!`; connection
//! strings never. `RUST_LOG=vantage_live=debug` shows the cache and queue
//! activity of both crates (filters match target prefixes).
//!
//! [`LiveTable::stats`] counts hits, misses, coalesced and master reads,
//! writes, invalidations and live events.

#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod cache;
pub mod live_stream;
mod live_table;
mod redact;

pub use cache::{Cache, CachedRows, CachedSlot, MemCache, NoCache, RedbCache, SlotKind, SlotValue};
#[cfg(feature = "redis")]
pub use cache::{RedisCache, TieredCache};
#[cfg(feature = "postgres")]
pub use live_stream::{install_notify_trigger, parse_notify_payload, PgNotifyLiveStream};
pub use live_stream::{LiveEvent, LiveStream, ManualLiveStream};
#[cfg(feature = "nats")]
pub use live_stream::{NatsFanout, NatsLiveStream, NatsPublisher};
#[cfg(feature = "surrealdb")]
pub use live_stream::{SurrealLiveStream, SurrealUrlError};
pub use live_table::{CachedMaster, CoreStack, LiveStack, LiveTable, MasterService, PageSelector};
pub use redact::redact_url;
pub use vantage_live_layers::bench;
pub use vantage_live_layers::error::into_vantage_error;
pub use vantage_live_layers::outbox;
pub use vantage_live_layers::write_queue::error::{QueueClosed, WritePanicked};
pub use vantage_live_layers::{
    CacheGroup, CacheLayer, CacheService, Request, Response, Rows, TableService, View, WriteQueue,
    WriteQueueLayer, WriteRequest,
};
pub use vantage_live_layers::{Clock, Freshness, ManualClock, RowChange, SystemClock};
pub use vantage_live_layers::{EventStats, EventStatus, InvalidateOnEventLayer};
pub use vantage_live_layers::{PublishInvalidationsLayer, Publisher};
pub use vantage_live_layers::{Stats, StatsSnapshot, Tracing, TracingLayer};

/// The layers crate, re-exported: build your own stack from its pieces.
pub use vantage_live_layers;
