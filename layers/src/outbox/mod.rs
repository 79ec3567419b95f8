//! Offline writes: a durable outbox, applied in order exactly once, with the
//! writer's own pending writes visible to reads.
//!
//! [`OutboxLayer`] sits where [`WriteQueueLayer`](crate::WriteQueueLayer)
//! sits, above a [`CacheLayer`](crate::CacheLayer). A write is *accepted
//! locally*: stored in a redb file with a sync, then answered. A worker
//! applies the stored writes to the inner service in the background, one at
//! a time, first in first out, and drops each from the file once the master
//! accepted it. Reads go to the inner service, and show the writes still
//! pending on top of what it answers.
//!
//! It differs from the write queue in what an answer means. The queue
//! answers a write with the master's reply; the outbox answers once the
//! write is on local disk, and the master's verdict comes later, through a
//! [`Receipt`] or [`OutboxHandle::subscribe`]. The queue's guarantees carry
//! over to the drain: one at a time, first in first out, detached from the
//! caller.
//!
//! # Guarantees
//!
//! - **Accepted means durable.** A write is acknowledged only after it is in
//!   the file in a commit made with [`redb::Durability::Immediate`] (synced
//!   to disk). A process killed at any point after the acknowledgement
//!   leaves the write in the file; the next process to open the folder
//!   applies it. A write that was not acknowledged was either stored whole
//!   or not at all (redb commits are atomic).
//! - **In order.** Writes get increasing sequence numbers in the order they
//!   are accepted (acceptances are serialised) and are applied in that
//!   order, each after the previous one has settled. Writes started
//!   concurrently are accepted in whatever order their futures run; to fix
//!   the order of two writes, await the first before starting the second.
//! - **Exactly once, by idempotent replay.** A write is dropped from the
//!   file only after the master accepted it (that drop is synced too). A
//!   crash between the master's acceptance and the drop leaves it at the
//!   head, so the next process sends it again: a *replay*. The head write
//!   is marked *in doubt* when the outbox is opened with writes pending and
//!   after an attempt that failed as unreachable (the master may have
//!   applied it before the connection broke); since drops are synced, no
//!   other write can be in doubt. An in-doubt write is applied so that
//!   applying it twice has the effect of once:
//!   - an **insert** (and an `insert_return_id`, which was given its id
//!     *before* it was acknowledged, and stored with it) is first looked up
//!     on the master by id; if the master holds a row with every field as
//!     written (the master may add fields, such as its id column, and store
//!     a boolean as 0/1), the insert landed: it counts as applied and is
//!     not sent again, and the cache below is invalidated through
//!     [`OutboxLayer::invalidator`] (the attempt that landed never
//!     answered, so the cache layer did not invalidate for it). Otherwise
//!     it is sent. Give the layer the table writes go to
//!     ([`OutboxLayer::verify_table`]) so that the lookup reads the master,
//!     not a cache, and the cache layer's invalidator (a `LiveTable` wires
//!     both);
//!   - a **replace**, **patch**, **delete** or **delete-all** is sent
//!     again: each sets rows to a state that does not depend on how often
//!     it is applied, and no later write of this outbox has run in between.
//!     (A change made to the same row by someone else in between is
//!     overwritten again, as it would be by the first attempt.)
//! - **Master outages.** A failed attempt is classified by
//!   [`classify`](classify()) (or your own, [`OutboxLayer::classify`]):
//!   - *unreachable*: the write stays at the head, in doubt, and is retried
//!     after a jittered, exponential backoff (50 ms doubling to 5 s by
//!     default; [`OutboxLayer::initial_backoff`],
//!     [`OutboxLayer::max_backoff`], [`OutboxHandle::retry_now`]). Writes
//!     keep being accepted meanwhile;
//!   - *rejected*: the master answered with an error. The write moves, in
//!     one synced commit, to the dead-letter list
//!     ([`OutboxHandle::dead_letters`], cleared with
//!     [`OutboxHandle::clear_dead_letters`]), its verdict is
//!     [`Verdict::Rejected`] with the master's error, and the writes behind
//!     it go on.
//! - **Bounded.** At most [`OutboxLayer::max_pending`] writes wait (default
//!   [`DEFAULT_MAX_PENDING`]); past it a write fails with
//!   [`OutboxFull`](error::OutboxFull) and nothing is stored. A write is
//!   never dropped silently.
//! - **Invalidation as for any write.** The drain sends each write through
//!   the inner service, so a cache layer below invalidates before the write
//!   counts as applied; the overlay for that write disappears only after
//!   that (see below).
//! - **A broken file never reaches the master.** [`OutboxLayer::open`]
//!   reads and decodes every entry before anything runs; a damaged,
//!   truncated or foreign file is an
//!   [`OpenOutboxError::Corrupt`](error::OpenOutboxError::Corrupt) naming
//!   it, and the file is left as it is (it may hold writes that are
//!   nowhere else).
//! - **Never blocks the runtime.** Every redb call runs on tokio's blocking
//!   pool.
//!
//! # What a write answers
//!
//! The local acknowledgement, shaped as the request kind promises so the
//! layer can stand in for the write queue under the value-set traits:
//!
//! | write | answer | verdict ([`Verdict::Applied`]) |
//! |---|---|---|
//! | insert, replace | the record as written | the master's row |
//! | patch | the partial as written (not the whole row) | the master's row |
//! | delete, delete-all | `Done` | `Done` |
//! | insert returning an id | the generated id | the same id |
//!
//! [`OutboxHandle::submit`] accepts a write and answers its [`Receipt`]:
//! its sequence number, [`Receipt::status`] and [`Receipt::verdict`].
//! [`OutboxHandle::subscribe`] reports every write as it settles.
//!
//! # Reads see your own pending writes
//!
//! A read takes a snapshot of the pending writes, asks the inner service,
//! and lays the snapshot over the answer, in sequence order. With nothing
//! pending a read goes straight through. The rules:
//!
//! - **A row** ([`Request::Get`](crate::Request::Get)): the master's row
//!   with the row's pending writes applied in order: an insert or replace
//!   sets it to the record as written, a patch merges its fields into it
//!   (a patch of a row that does not exist does nothing: the master will
//!   reject it), a delete removes it, a delete-all removes it if it meets
//!   that delete's conditions. A row with a pending insert, replace or
//!   delete is answered without asking the inner service at all, so it
//!   reads back while the master is unreachable.
//! - **Views with equality conditions**: a row the master lists in the view
//!   stays in it unless a pending write removes it or sets a condition
//!   field to a value that does not match; a row the master does not list
//!   joins the view only through a pending insert or replace whose record
//!   meets every condition. (Values are compared as text: numbers in
//!   decimal, booleans as `true`/`false` or `1`/`0`.) A pending patch does
//!   not pull an outside row into a view.
//! - **A list** ([`Request::List`](crate::Request::List)), unpaginated: the
//!   master's rows in the master's order with their pending writes applied
//!   (removed rows dropped), then the rows that pending inserts and
//!   replaces add to the view (ids the master does not list in it), in the
//!   order of their first pending write.
//! - **A page**: the same sequence, paginated. A removed row leaves its
//!   place empty (the page is one row short) instead of pulling a row over
//!   from the next page, and added rows come after the master's last row,
//!   continuing its pagination: they fill the master's last page, then the
//!   pages after it. So every row of the overlaid view is on exactly one
//!   page: none is lost, none is shown twice. To place added rows the
//!   outbox reads the whole view (one cached slot); while no pending write
//!   adds rows, a page is the master's page with its rows overlaid.
//! - **A count** ([`Request::Count`](crate::Request::Count)): the number of
//!   rows of the overlaid unpaginated list (so it reads the whole view
//!   while writes are pending). It agrees with the lists.
//! - **Opaque views** (a table handle): pending writes apply to the rows the
//!   master lists; pending inserts are not shown (their conditions cannot
//!   be checked here), and counts are the master's.
//! - A pending row is the record **as written**: columns the master adds
//!   (its id column, defaults) appear once the write is applied.
//!
//! A read and the drain are ordered by a gate: the drain does not *start*
//! a write that a read's snapshot lacks while that read is asking the inner
//! service. A write in flight is in the snapshot, and laying it over a
//! master that already applied it changes nothing (every write is
//! idempotent as a change of rows). So a read answers what the master held
//! after some prefix of the pending writes, with the rest laid over it:
//! the state after all of them. A write's overlay disappears only after
//! the drain has applied it through the inner service (a cache below has
//! invalidated by then), so no read falls between the two. The gate is a
//! fair read-write lock: reads share it; the drain takes it alone only for
//! the instant it starts a new write, after the reads already holding it
//! have answered, and a read that arrives meanwhile waits for that. A read
//! never waits behind a master write. A read that finds nothing pending
//! skips the gate and the overlay altogether.
//!
//! To mark what is pending, a UI asks [`OutboxHandle::pending_ids`] (or
//! [`OutboxHandle::is_pending`]) and [`OutboxHandle::stats`].
//!
//! # Choosing the maximum
//!
//! Every pending write is in memory and in the file until the master takes
//! it, and is laid over every read. The default, 10,000, holds a long
//! offline session of form edits; the file grows by the size of each
//! record. Pick a smaller bound to make a bulk import fail early instead of
//! piling up offline. Reads of views with pending inserts read the whole
//! view (see above): keep views small enough for that while offline.
//!
//! # One outbox, one master table
//!
//! The file holds writes for one table. redb locks it: a second open, from
//! this process or another, fails with
//! [`OpenOutboxError::AlreadyOpen`](error::OpenOutboxError::AlreadyOpen).
//! The drain applies writes through the last service the layer built
//! before the drain started (it starts with the first request, or
//! [`OutboxHandle::start`]), on that request's tokio runtime. It stops when
//! every layer, service and handle of the outbox is gone, or on
//! [`OutboxHandle::close`], after the write in flight; pending writes stay
//! in the file.
//!
//! A `delete_all` of a view with opaque conditions cannot be stored (it
//! carries a live table handle): it fails with
//! [`NotStorable`](error::NotStorable), and nothing is accepted.
//!
//! # Tracing
//!
//! Opening logs `info!` "outbox opened" (`file`, `pending`,
//! `dead_letters`). A write accepted logs `debug!` (`seq`, `op`, `id`). The
//! drain runs in a root `outbox` span (`file`); each attempt in an
//! `outbox_apply` span (`seq`, `op`, `id`, `replay`), logging
//! `outcome="applied"`, `"unreachable"` (with `retry_in_ms`) or
//! `"rejected"` (a `warn!`).
//!
//! # Example
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::{CacheLayer, NoCache, Request, TableService, Value, View, WriteRequest};
//! # use vantage_live_layers::outbox::{OutboxLayer, Verdict};
//! # async fn demo(master: vantage_table::any::AnyTable, folder: &std::path::Path) -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt};
//! use vantage_types::Record;
//!
//! let outbox = OutboxLayer::open(folder)?
//!     .max_pending(1_000)
//!     .verify_table(master.clone());
//! let handle = outbox.handle().clone();
//! let stack = ServiceBuilder::new()
//!     .layer(outbox)
//!     .layer(CacheLayer::new(Arc::new(NoCache), "clients"))
//!     .service(TableService::new(master));
//!
//! let record: Record<Value> = [("name".to_string(), Value::Text("Ada".into()))]
//!     .into_iter()
//!     .collect();
//! // Answered once it is on local disk, master or no master:
//! let receipt = handle
//!     .submit(WriteRequest::Insert { id: "ada".into(), record })
//!     .await?;
//! // Reads show it while it is pending:
//! let row = stack.oneshot(Request::Get { view: View::new(), id: "ada".into() }).await?;
//! assert!(row.into_row()?.is_some());
//! // And the master's verdict comes later:
//! match receipt.verdict().await {
//!     Verdict::Applied(answer) => println!("on the master: {answer:?}"),
//!     Verdict::Rejected(dead) => println!("{dead}"),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```

mod accept;
pub mod classify;
mod core;
mod drain;
mod entry;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod overlay;
mod receipt;
mod service;
mod status;
mod store;

pub use self::classify::{classify, Classifier, Failure, UNREACHABLE_MARKERS};
pub use self::entry::{DeadLetter, OutboxOp, PendingWrite};
pub use self::handle::OutboxHandle;
pub use self::layer::{OutboxLayer, DEFAULT_MAX_PENDING};
pub use self::receipt::Receipt;
pub use self::service::Outbox;
pub use self::status::{FlushOutcome, OutboxStats, Settled, Verdict, WriteStatus, RECENT_VERDICTS};
pub use self::store::FILE_NAME;
