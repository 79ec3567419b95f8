//! Spans and structured events for every request.
//!
//! [`TracingLayer`] opens one span per request, named `read` or `write`, and
//! runs the rest of the stack inside it, so every event a layer below emits
//! (cache hits and misses, the write queue, cache backend calls) lands in the
//! trace of the request that caused it. It differs from tower-http's
//! `TraceLayer` in knowing the request vocabulary: its spans carry the
//! cache_key, the operation, the page and the row id, and it logs record
//! bodies only at `TRACE`.
//!
//! | span    | level   | fields                                              |
//! |---------|---------|-----------------------------------------------------|
//! | `read`  | `DEBUG` | `cache_key`, `op` (`list`, `get`, `get_some`, `count`), `page` and `ipp` (if the view is paginated), `id` (for `get`) |
//! | `write` | `DEBUG` | `cache_key`, `op` (`insert`, `replace`, `patch`, `delete`, `delete_all`, `insert_return_id`), `id` (the generated one is recorded when `insert_return_id` answers) |
//!
//! Events of the layer itself:
//!
//! - `ERROR`, once per request that answers `Err` (what the caller sees):
//!   `outcome="failed"` with the error and, so that it reads on its own even
//!   where `DEBUG` spans are filtered out, `cache_key`, `op` and `id`. No
//!   layer below logs at `ERROR`: a failure is reported once, here.
//! - `TRACE`: a write's record body as it goes in and the stored record that
//!   comes back; a read's row count. Record bodies are never logged at any
//!   other level.
//!
//! The span is entered while the inner service's `call` runs and whenever its
//! future is polled (`tracing::Instrument`); no box is added. Below it, the
//! write queue carries the caller's span into the task that applies the write
//! (see [`WriteQueueLayer`](crate::WriteQueueLayer)), and the cache layer
//! carries the reader's span into its single-flight master read.
//!
//! # Filtering
//!
//! Every target in this crate starts with `vantage_live_layers`, and
//! `tracing-subscriber`'s `EnvFilter` matches targets by prefix, so
//! `RUST_LOG=vantage_live=debug` covers this crate and `vantage-live` alike.
//!
//! # Example
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::{CacheLayer, NoCache, Request, TableService, TracingLayer, View};
//! # async fn demo(master: vantage_table::any::AnyTable) -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt};
//! let stack = ServiceBuilder::new()
//!     .layer(TracingLayer::new("clients")) // outermost: sees what the caller sees
//!     .layer(CacheLayer::new(Arc::new(NoCache), "clients"))
//!     .service(TableService::new(master));
//! let rows = stack.oneshot(Request::List(View::new())).await?.into_rows()?;
//! # let _ = rows; Ok(()) }
//! ```

pub mod future;
mod layer;
mod service;

pub use self::layer::TracingLayer;
pub use self::service::Tracing;
