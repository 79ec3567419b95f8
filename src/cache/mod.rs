//! Cache backends, and the [`Cache`] trait they implement.
//!
//! - [`MemCache`]: in memory, on moka; bounded by weight, optional time to
//!   live, O(1) invalidation per cache_key.
//! - [`RedbCache`]: on disk, one redb file per folder; survives restarts.
//! - [`NoCache`]: stores nothing; the parity check.
//! - `RedisCache` (cargo feature `redis`): in Redis, shared by every process
//!   pointed at it; fenced fills and leases across processes.
//! - `TieredCache` (feature `redis`): a memory tier in each process in front
//!   of a `RedisCache`, kept coherent by an invalidation fan-out.
//!
//! The trait and [`CachedRows`] come from `vantage-live-layers`, so a stack
//! built from the layers alone can use these backends and the other way
//! round.

mod mem;
mod redb;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod slot_store;
#[cfg(feature = "redis")]
mod tiered;

pub use self::mem::{
    Eviction, EvictionPolicy, MemCache, MemCacheBuilder, MokaBuilder, RemovalCause,
    DEFAULT_MAX_WEIGHT,
};
pub use self::redb::{
    OpenCacheError, RedbCache, CHECKPOINT_INTERVAL, DEFAULT_FRONT_WEIGHT,
    FILE_NAME as REDB_FILE_NAME,
};
#[cfg(feature = "redis")]
pub use self::redis::{
    RedisCache, RedisCacheBuilder, RedisCacheError, DEFAULT_KEY_PREFIX, DEFAULT_LEASE_TTL,
    DEFAULT_LEASE_WAIT, DEFAULT_OP_TIMEOUT, DEFAULT_REDIS_TTL,
};
pub use self::slot_store::{SlotEntry, SlotId};
#[cfg(feature = "redis")]
pub use self::tiered::{TieredCache, TieredCacheBuilder, DEFAULT_FRONT_TTL};
pub use vantage_live_layers::cache::{
    split_key, Cache, CachedRows, CachedSlot, DropGuard, Generations, Namespace, NoCache, Peek,
    Prefix, RowChange, RowDrop, Scope, SlotKeys, SlotKind, SlotValue, Ticket,
};
