//! Dropping a cache_key whenever a [`LiveStream`](crate::LiveStream) says the
//! master changed.
//!
//! [`InvalidateOnEventLayer`] consumes a live stream in a background task and,
//! on every [`LiveEvent`](crate::LiveEvent), drops the whole cache_key of a
//! [`CacheLayer`](crate::CacheLayer) through its
//! [`Invalidator`](crate::Invalidator) (v1's *sloppy* invalidation: the
//! event's id is logged, not used). Requests pass straight through
//! [`InvalidateOnEvent`]; the layer adds no way to fail and no box.
//!
//! Unlike the cache layer's own invalidation, which follows writes made
//! *through* the stack, this one follows changes made anywhere: another
//! process, a SQL console, a trigger.
//!
//! # Guarantees
//!
//! - **Every event invalidates, in order.** An event's invalidation is done
//!   before the next event is taken from the stream. It bumps the cache
//!   layer's fence, so a read that missed and is still fetching when the
//!   event is handled does not install its (possibly older) rows.
//! - **Gaps invalidate.** Each subscription, the first one included, drops the
//!   cache_key right after subscribing: changes made while nobody listened are
//!   covered.
//! - **Lost streams come back.** A stream that ends (a source signals errors
//!   and lost connections by ending) is subscribed again after a delay: the
//!   n-th delay is drawn from `[c / 2, c]` with `c = initial * 2^n` capped at
//!   `max` (defaults 50 ms and 5 s; see
//!   [`InvalidateOnEventLayer::initial_backoff`] and
//!   [`InvalidateOnEventLayer::max_backoff`]). A subscription that stayed up
//!   for at least `max` resets the delays. Connected and disconnected are
//!   `info!` events in the task's `live_stream` span (field `cache_key`),
//!   reconnecting is a `warn!`.
//!
//! # Tracing
//!
//! Each event is handled in a `live_event` span (fields `event_kind`, `id`)
//! inside `live_stream`; its invalidation logs `outcome="invalidated"` at
//! `debug!` (or `outcome="failed"` at `warn!`), and the cache backend call
//! has a `cache.invalidate_prefix` span of its own. Every event taken from
//! the stream counts in the cache layer's
//! [`Stats`](crate::Stats) (`events_received`).
//! - **The task lives as long as its users.** The layer and every service it
//!   built hold a token; the task holds none. When the last of them is
//!   dropped, the task drops its subscription and ends, even if it was
//!   waiting for an event or between reconnects.
//!
//! # When the task starts
//!
//! With the first request through any of the layer's services, on that
//! request's runtime: building a layer or a service starts nothing (a stack
//! built and thrown away costs nothing), and building never panics for want
//! of a runtime. The first requests wait until the task's first
//! subscription is made and its invalidation done: a read that started
//! before the stack listened might otherwise fill the cache with rows older
//! than a change it never heard of (and its fill would be refused anyway).
//! From then on requests pass straight through.
//!
//! [`EventStatus`] watches the task: how many subscriptions and events it
//! handled, whether it is subscribed, whether it ended.
//!
//! # Order
//!
//! Where the layer sits in a stack does not change what it does: it only
//! needs the cache layer's invalidator. Put it outermost, so that the first
//! request through the stack starts the task and dropping the stack ends it.
//!
//! # Example
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::*;
//! # async fn demo(master: vantage_table::any::AnyTable) -> vantage_core::Result<()> {
//! use tower::{ServiceBuilder, ServiceExt};
//! let events = ManualLiveStream::new();
//! let cache = CacheLayer::new(Arc::new(NoCache), "clients");
//! let stack = ServiceBuilder::new()
//!     .layer(InvalidateOnEventLayer::new(Arc::new(events.clone()), cache.invalidator()))
//!     .layer(cache)
//!     .service(TableService::new(master));
//! let mut status = stack.status();
//! status.wait_for(|s| s.subscribed).await;
//! events.push(LiveEvent::updated("ada")); // drops every "clients" slot
//! status.wait_for(|s| s.events >= 1).await;
//! # drop(stack); Ok(()) }
//! ```

pub mod future;
mod layer;
mod service;
mod status;
mod task;

pub use self::layer::InvalidateOnEventLayer;
pub use self::service::InvalidateOnEvent;
pub use self::status::{EventStats, EventStatus};
pub use crate::backoff::{DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF};
