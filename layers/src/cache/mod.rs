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
//! - **A write invalidates before it answers.** A write that succeeds drops
//!   every slot of the cache_key before its response is returned, so a read
//!   issued after the response never sees a pre-write slot. A write that
//!   fails leaves the cache as it was.
//! - **No stale fill.** A read that missed notes the cache_key's generation
//!   before asking the inner service and installs what it got only if no
//!   invalidation happened meanwhile (in this stack, or, for backends that
//!   implement [`Cache::generation`], in any stack sharing the backend).
//! - **Single flight.** Concurrent misses of one slot make one read of the
//!   inner service, and every waiter gets its answer (or its error). A read
//!   that missed just before another read's fill serves that fill instead of
//!   reading again.
//! - **Cache faults cost speed, not correctness.** A failing or malformed
//!   `get` is a miss, a failing `put` still returns the inner service's
//!   answer, and a failing invalidation makes reads bypass the backend until
//!   an invalidation succeeds, so a stale slot is never served.
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
mod invalidator;
mod layer;
mod service;
mod slot;

pub use self::backend::{Cache, CachedRows, NoCache};
pub use self::invalidator::Invalidator;
pub use self::layer::CacheLayer;
pub use self::service::CacheService;
pub use self::slot::{split_key, SlotKeys};
