//! Ordered, detached writes: a bounded FIFO queue on tower's `Buffer`.
//!
//! [`WriteQueueLayer`] sends every write ([`Request::Write`]: insert,
//! replace, patch, delete, delete all, insert returning an id) through a
//! bounded queue and applies them to the inner service one at a time, in the
//! order they entered. Reads go straight to the inner service.
//!
//! It is built on [`tower::buffer::Buffer`], and differs from it in two ways.
//! A plain `Buffer` calls the inner service in order but hands the response
//! future back to the caller, so the calls may *complete* in any order and
//! the caller's future is what drives the work: drop it and the work stops
//! (or, if the worker has not reached the request yet, never starts). A
//! `WriteQueue` finishes each write on a task of its own before it starts the
//! next one, whoever is still waiting for the answer.
//!
//! # Guarantees
//!
//! - **One at a time, first in first out.** A write takes its place in the
//!   queue when `WriteQueue::call` is called: it enters at once if the
//!   queue has room, or else waits for room in the queue's fair (first come,
//!   first served) semaphore. Writes are applied in the order they were
//!   called, each only after the previous one has finished: its whole inner
//!   future, including a cache layer's invalidation, has completed. The order
//!   does not depend on when (or on which task) the returned futures are
//!   polled, so `ready().await; tokio::spawn(queue.call(write))` in a loop
//!   keeps its order. Clones of one `WriteQueue` share the queue. (Called
//!   outside a tokio runtime, a write takes its place on its first poll
//!   instead: the queue's worker cannot start before there is a runtime.)
//! - **Detached completion.** Once a write has entered the queue it is
//!   applied even if its caller drops the future (a UI that navigates away,
//!   a `tokio::time::timeout`). Fire-and-forget callers can still
//!   `tokio::spawn` the call.
//! - **Each caller gets its own reply**: the inner service's result for its
//!   own write, never another's.
//! - **Reads never wait behind writes.** A read calls the inner service
//!   directly and never touches the queue, so a long or full queue does not
//!   hold it up. [`WriteQueue`]'s readiness is the inner service's (a
//!   concurrency-limited inner service shows through it); a full queue does
//!   not make it pending: a write that finds the queue full waits inside its
//!   future. A write gives back the readiness `poll_ready` reserved on the
//!   inner service before it goes to the queue, so a caller that holds one
//!   handle never keeps, say, a concurrency limit's permit that the queue's
//!   worker needs.
//!
//! ## How a dropped caller's write is kept alive
//!
//! Two things would lose it with a plain `Buffer`: the worker skips a queued
//! request whose caller has gone before it is dequeued, and the work runs
//! inside the response future the caller holds. So:
//!
//! 1. When a write enters the queue (`Buffer::poll_ready`, then
//!    `Buffer::call`, in `WriteQueue::call` or in the poll that found room),
//!    a small
//!    forwarding task that owns the buffer's response future. The buffer's
//!    reply channel therefore stays open until the write is done, and the
//!    worker never sees the write as abandoned. The forwarding task passes
//!    the outcome to the caller over a oneshot channel, if the caller is
//!    still there.
//! 2. Behind the buffer sits a one-at-a-time service. Its `call` spawns the
//!    write (the inner service's readiness and call, wrapped in
//!    `catch_unwind`) on a tokio task and returns a future that only awaits
//!    that task's `JoinHandle`; dropping it detaches, it does not cancel.
//! 3. The spawned task holds the single permit of a semaphore until the write
//!    has finished, and the one-at-a-time service is not ready without that
//!    permit. The buffer's worker waits for readiness before it hands the
//!    service the next write, so the next write starts only after the
//!    previous one ended.
//!
//! # Failure modes
//!
//! Nothing accepted is lost, and each failure has its own error:
//!
//! - **The target rejects a write**: that caller gets the target's own
//!   `VantageError`, unchanged. An inner cache layer does not invalidate.
//!   Later writes go on.
//! - **A write panics**: the panic is caught on the write's task; that caller
//!   gets a `VantageError` whose source is
//!   [`WritePanicked`](error::WritePanicked) (with the panic message). Later
//!   writes go on. Whether the panicking write reached the target is unknown.
//! - **The queue is full**: the caller waits for room (back-pressure), in
//!   call order; it is not turned away. Until it has entered, dropping its
//!   future withdraws the write.
//! - **Every clone of the `WriteQueue` is dropped**: writes already accepted
//!   are still applied, in order; then the worker ends.
//! - **The tokio runtime shuts down**: the queue's worker and its tasks run
//!   on the runtime of the first write; once it is gone, writes fail with a
//!   `VantageError` whose source is [`QueueClosed`](error::QueueClosed).
//!   Keep a stack on the runtime it first wrote from.
//!
//! The queue needs a tokio runtime for its tasks. It is started by the first
//! write, not when the layer builds the service, so a stack can be built
//! outside a runtime.
//!
//! # Choosing a bound
//!
//! The bound is how many accepted writes may wait in the queue. Beyond them,
//! one more is held by the queue's worker until the write in flight finishes,
//! and one is in flight: with the bound `n`, up to `n + 2` writes are
//! accepted and not yet applied. A caller that finds the queue full waits in
//! its future until there is room. The default is [`DEFAULT_BOUND`] (256).
//!
//! tower's `Buffer` advises a bound of at least the number of concurrent
//! callers, because a slot reserved by `poll_ready` is held until the `call`
//! that should follow it. A `WriteQueue` reserves and sends in the same poll,
//! so no slot is ever held by a caller that has not sent; the bound only
//! decides how far writers may run ahead of the target:
//!
//! - Every accepted write is in memory until applied. If the target is slow
//!   or unreachable, a large bound means many writes the user believes saved
//!   that are not yet on the target, and a long wait for the last one.
//! - A small bound makes writers wait sooner. A UI that must never wait on a
//!   save should spawn the write or size the bound to the largest burst of
//!   edits it expects; a bulk import is better served by a small bound, so
//!   it runs at the target's pace.
//!
//! # Tracing
//!
//! A write entering the queue logs `debug!` "write queued" (`op`, `id`) in
//! its caller's span. The write is applied in a `queue_worker` span (`op`,
//! `id`) whose parent is the caller's span, on the write's task: whatever
//! the write logs below (the cache layer's `outcome="invalidated"`, a
//! rejection) lands in the trace of the request that made it, even after the
//! caller has gone. The task then logs `debug!` "queued write drained and
//! applied" (with the generated id of an `insert_return_id`), or, for a
//! rejected write, `debug!` with `outcome="failed"`; a panic is a `warn!`
//! (the queue recovers). The `Err` the caller sees is not logged at `ERROR`
//! here: a [`TracingLayer`](crate::TracingLayer) above does that once.
//!
//! # Order in a stack
//!
//! Put the write queue *above* a [`CacheLayer`](crate::CacheLayer): the
//! cache layer's invalidation is part of its write future, so it runs on the
//! write's detached task. It completes even when the caller is gone, and
//! before the caller's reply is sent, so a read issued after the reply never
//! sees a pre-write slot. Below the cache, a write's invalidation would run
//! in the caller's future and be lost with it.
//!
//! # Example
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::{
//! #     CacheLayer, NoCache, Request, TableService, Value, View, WriteQueueLayer, WriteRequest,
//! # };
//! # async fn demo(master: vantage_table::any::AnyTable) -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt};
//! use vantage_types::Record;
//!
//! let stack = ServiceBuilder::new()
//!     .layer(WriteQueueLayer::new().bound(64))
//!     .layer(CacheLayer::new(Arc::new(NoCache), "clients"))
//!     .service(TableService::new(master));
//!
//! let record: Record<Value> = [("name".to_string(), Value::Text("Ada".into()))]
//!     .into_iter()
//!     .collect();
//! let id = stack
//!     .clone()
//!     .oneshot(WriteRequest::InsertReturnId { record }.into())
//!     .await?
//!     .into_id()?;
//! // The write was applied and the cache invalidated before the reply.
//! let row = stack
//!     .oneshot(Request::Get { view: View::new(), id })
//!     .await?
//!     .into_row()?;
//! # let _ = row; Ok(()) }
//! ```
//!
//! [`Request::Write`]: crate::Request::Write

pub mod error;
pub mod future;
mod layer;
mod serial;
mod service;

pub use self::layer::{WriteQueueLayer, DEFAULT_BOUND};
pub use self::service::WriteQueue;
