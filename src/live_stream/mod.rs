//! Live streams: the [`LiveStream`] trait and its sources.
//!
//! The trait, [`LiveEvent`] and [`ManualLiveStream`] come from
//! `vantage-live-layers` and are re-exported at the crate root. This module
//! adds real sources:
//!
//! - `PgNotifyLiveStream` (cargo feature `postgres`): PostgreSQL
//!   `LISTEN`/`NOTIFY`, with a helper that installs the notifying trigger.
//! - `SurrealLiveStream` (cargo feature `surrealdb`): SurrealDB
//!   `LIVE SELECT` on one table.
//! - `NatsLiveStream` and `NatsPublisher` (cargo feature `nats`): the
//!   invalidation fan-out between processes, over NATS (see `NatsFanout`).

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "surrealdb")]
mod surreal;

#[cfg(feature = "nats")]
pub use self::nats::{
    decode_event, encode_event, subject_for, NatsFanout, NatsFanoutError, NatsLiveStream,
    NatsPublisher, DEFAULT_SUBJECT_PREFIX, ORIGIN_HEADER,
};
#[cfg(feature = "postgres")]
pub use self::postgres::{install_notify_trigger, parse_notify_payload, PgNotifyLiveStream};
#[cfg(feature = "surrealdb")]
pub use self::surreal::{SurrealLiveStream, SurrealUrlError};
pub use vantage_live_layers::live_stream::{LiveEvent, LiveStream, ManualLiveStream};
