//! vantage-live: a cached, non-blocking [`LiveTable`] over any Vantage
//! `AnyTable`.
//!
//! ```
//! # fn main() {}
//! ```

#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod cache;
mod live_table;

pub use cache::{Cache, CachedRows, MemCache, NoCache, RedbCache};
pub use live_table::{LiveStack, LiveTable};
pub use vantage_live_layers::write_queue::error::{QueueClosed, WritePanicked};
