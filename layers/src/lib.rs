//! tower middleware for [vantage-live](https://docs.rs/vantage-live): the
//! request vocabulary, the service over an `AnyTable`, and the layers that
//! stack in front of it.
//!
//! Reads and writes are [`Request`]s answered by [`Response`]s. The innermost
//! [`TableService`] runs them against a Vantage `AnyTable`; layers add
//! behaviour in front of it:
//!
//! - [`CacheLayer`]: reads served from a [`Cache`], writes invalidate it.
//! - [`InvalidateOnEventLayer`]: a [`LiveStream`]'s events invalidate it.
//! - [`WriteQueueLayer`]: writes applied one at a time, first in first out,
//!   on a bounded queue (tower's `Buffer`); a write that entered the queue is
//!   applied even if its caller gives up; reads pass by.
//! - [`OutboxLayer`]: instead of the write queue, writes accepted into a
//!   durable local outbox and applied in the background, in order, exactly
//!   once; reads show the pending writes.
//! - [`PublishInvalidationsLayer`]: every acknowledged write is handed to a
//!   [`Publisher`] (a message bus), so other processes can drop their caches.
//! - [`TracingLayer`]: a span per request and one `ERROR` per failed request;
//!   every layer logs inside it (see [`trace`] for the spans and fields).
//!
//! [`CacheLayer::stats`] counts what the stack does (hits, misses, master
//! reads, writes, invalidations, events) in a [`Stats`].
//!
//! Each layer stands alone; compose them with `tower::ServiceBuilder`.
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::{CacheLayer, NoCache, Request, TableService, View};
//! # async fn demo(master: vantage_table::any::AnyTable) -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt};
//! let stack = ServiceBuilder::new()
//!     .layer(CacheLayer::new(Arc::new(NoCache), "clients"))
//!     .service(TableService::new(master));
//! let count = stack.oneshot(Request::Count(View::new())).await?.into_count()?;
//! # let _ = count; Ok(()) }
//! ```

#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod backoff;
pub mod bench;
pub mod cache;
pub mod error;
pub mod invalidate_on_event;
pub mod live_stream;
pub mod master_pages;
pub mod outbox;
pub mod publish;
pub mod request;
pub mod stats;
pub mod table;
pub mod trace;
pub mod write_queue;

pub use cache::{
    Cache, CacheGroup, CacheLayer, CacheService, CachedRows, CachedSlot, Clock, Freshness,
    Generations, Invalidator, ManualClock, NoCache, RowChange, SlotKeys, SlotKind, SlotValue,
    SystemClock,
};
pub use invalidate_on_event::{EventStats, EventStatus, InvalidateOnEvent, InvalidateOnEventLayer};
pub use live_stream::{LiveEvent, LiveStream, ManualLiveStream};
pub use master_pages::{MasterPages, MasterPagesLayer};
pub use outbox::{Outbox, OutboxHandle, OutboxLayer};
pub use publish::{PublishInvalidations, PublishInvalidationsLayer, Publisher};
pub use request::{Request, Response, Rows, Value, View, WriteRequest};
pub use stats::{Stats, StatsSnapshot};
pub use table::{uuid_v7_id, IdGenerator, TableService};
pub use trace::{Tracing, TracingLayer};
pub use write_queue::{WriteQueue, WriteQueueLayer};
