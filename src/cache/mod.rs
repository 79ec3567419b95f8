//! Cache backends, and the [`Cache`] trait they implement.
//!
//! - [`MemCache`]: in memory, on moka; bounded by weight, optional time to
//!   live, O(1) invalidation per cache_key.
//! - [`RedbCache`]: on disk, one redb file per folder; survives restarts.
//! - [`NoCache`]: stores nothing; the parity check.
//!
//! The trait and [`CachedRows`] come from `vantage-live-layers`, so a stack
//! built from the layers alone can use these backends and the other way
//! round.

mod mem;
mod redb;
mod slot_store;

pub use self::mem::{MemCache, MemCacheBuilder, DEFAULT_MAX_WEIGHT};
pub use self::redb::{
    OpenCacheError, RedbCache, CHECKPOINT_INTERVAL, DEFAULT_FRONT_WEIGHT,
    FILE_NAME as REDB_FILE_NAME,
};
pub use vantage_live_layers::cache::{
    split_key, Cache, CachedRows, CachedSlot, DropGuard, Generations, Namespace, NoCache, Peek,
    Prefix, Scope, SlotKeys, SlotKind, SlotValue, Ticket,
};
