//! Typed slots in memory, on moka: the store behind [`MemCache`] and
//! [`RedbCache`]'s memory front.
//!
//! [`MemCache`]: super::MemCache
//! [`RedbCache`]: super::RedbCache
//!
//! Slots are keyed by their namespace, the namespace's *epoch* and a hash
//! of the slot's key; the entry keeps the key itself, and a lookup whose key
//! differs (a hash collision) is a miss. Keying by epoch makes dropping a
//! whole namespace O(1): [`Namespace::start_drop`] moves the epoch, the old
//! slots become unreachable, and eviction reclaims them (least recently used
//! first). Fills and single-slot drops run in moka's per-key
//! `and_compute_with`, so a fill's generation check and its store are atomic
//! with respect to a drop of the same slot.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::Arc;

use moka::ops::compute::Op;
use vantage_live_layers::cache::{Namespace, Ticket};
use vantage_live_layers::{CachedSlot, SlotValue, Value};
use vantage_types::Record;

/// What moka keys a slot by (opaque: its namespace, the namespace's epoch
/// and a hash of the slot's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotId {
    namespace: u64,
    epoch: u64,
    hash: u64,
}

/// What moka stores for a slot: its full key (to tell hash collisions apart,
/// and to name it to an eviction listener) and its value.
#[derive(Debug)]
pub struct SlotEntry {
    /// `<namespace>/<slot>`.
    key: Box<str>,
    /// Where `<slot>` starts in `key`.
    slot_at: usize,
    slot: CachedSlot,
}

impl SlotEntry {
    fn new(namespace: &Namespace, slot: &str, value: CachedSlot) -> Self {
        let mut key = String::with_capacity(namespace.name().len() + 1 + slot.len());
        key.push_str(namespace.name());
        key.push('/');
        key.push_str(slot);
        Self {
            slot_at: namespace.name().len() + 1,
            key: key.into_boxed_str(),
            slot: value,
        }
    }

    /// The slot's key, as [`SlotKeys`](vantage_live_layers::SlotKeys) writes
    /// it: `<namespace>/<slot>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The slot within its namespace.
    fn within(&self) -> &str {
        &self.key[self.slot_at..]
    }

    /// What the slot holds.
    pub fn slot(&self) -> &CachedSlot {
        &self.slot
    }
}

/// The moka cache under a slot store (hashing with foldhash: its keys are
/// three integers).
pub(crate) type Slots = moka::sync::Cache<SlotId, Arc<SlotEntry>, RandomState>;

/// Typed slots in memory, fenced by their namespace's generation.
#[derive(Clone)]
pub(crate) struct SlotStore {
    slots: Slots,
    hasher: RandomState,
}

impl SlotStore {
    pub(crate) fn new(slots: Slots) -> Self {
        Self {
            slots,
            hasher: RandomState::default(),
        }
    }

    pub(crate) fn slots(&self) -> &Slots {
        &self.slots
    }

    fn id(&self, namespace: &Namespace, epoch: u64, slot: &str) -> SlotId {
        SlotId {
            namespace: namespace.id(),
            epoch,
            hash: self.hasher.hash_one(slot),
        }
    }

    /// The slot `slot` of `namespace` in its current epoch.
    pub(crate) fn get(&self, namespace: &Namespace, slot: &str) -> Option<CachedSlot> {
        let id = self.id(namespace, namespace.epoch(), slot);
        let entry = self.slots.get(&id)?;
        (entry.within() == slot).then(|| entry.slot.clone())
    }

    /// Store `value` under `slot` if `ticket` is still current: the check
    /// and the store run under moka's lock for the key, as do
    /// [`SlotStore::remove`]s. Keyed by the ticket's epoch, so a whole drop
    /// after the check leaves it unreachable.
    pub(crate) fn fill(
        &self,
        namespace: &Namespace,
        ticket: Ticket,
        slot: &str,
        value: CachedSlot,
    ) -> bool {
        if !ticket.is_current(namespace) {
            return false;
        }
        let id = self.id(namespace, ticket.epoch(), slot);
        let entry = Arc::new(SlotEntry::new(namespace, slot, value));
        let mut stored = false;
        self.slots.entry(id).and_compute_with(|_| {
            if ticket.is_current(namespace) {
                stored = true;
                Op::Put(entry)
            } else {
                Op::Nop
            }
        });
        stored
    }

    /// Remove `slot` of `namespace` from its current epoch (a row-level
    /// drop), under moka's lock for the key, like fills.
    pub(crate) fn remove(&self, namespace: &Namespace, slot: &str) {
        let id = self.id(namespace, namespace.epoch(), slot);
        self.slots.entry(id).and_compute_with(|entry| match entry {
            // A hash collision removes another slot: a cache may drop more.
            Some(_) => Op::Remove,
            None => Op::Nop,
        });
    }

    /// Store `value` under `slot` in the current epoch, unconditionally (the
    /// seed's `put`).
    pub(crate) fn put(&self, namespace: &Namespace, slot: &str, value: CachedSlot) {
        let id = self.id(namespace, namespace.epoch(), slot);
        self.slots
            .insert(id, Arc::new(SlotEntry::new(namespace, slot, value)));
    }
}

/// An estimate of the memory a slot takes, in bytes: every heap block its
/// rows own, rounded the way the allocator rounds them, the spare capacity of
/// their maps, and the cache's own bookkeeping for the slot.
///
/// Counting only the text and the values (as a first version did) weighed
/// rows of four short fields at about half of what they really take, so a
/// cache capped at 64 MiB grew the process by about 125 MiB
/// (`examples/bench_report.rs` measures it).
pub(crate) fn weigh(entry: &SlotEntry) -> u64 {
    // moka's entry (its map bucket, access-order node and entry info), the
    // key, the `Arc<SlotEntry>` and the entry itself.
    const SLOT: u64 = 256;
    let mut total = SLOT + block(entry.key.len());
    match &entry.slot.value {
        SlotValue::Rows(rows) => {
            total += block(std::mem::size_of::<vantage_live_layers::request::Rows>())
                + map_bytes::<String, Record<Value>>(rows.capacity());
            for (id, record) in rows.iter() {
                total += block(id.capacity()) + record_bytes(record);
            }
        }
        SlotValue::Row(Some(record)) => {
            total += block(std::mem::size_of::<Record<Value>>()) + record_bytes(record)
        }
        _ => {}
    }
    total
}

fn record_bytes(record: &Record<Value>) -> u64 {
    let mut total = map_bytes::<String, Value>(record.capacity());
    for (field, value) in record.iter() {
        total += block(field.capacity()) + value_heap(value);
    }
    total
}

/// The heap of an `IndexMap<K, V>` with room for `capacity` entries: its
/// entries (hash, key and value each) and its index table.
fn map_bytes<K, V>(capacity: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    #[allow(dead_code)]
    struct Bucket<K, V>(usize, K, V);
    // hashbrown's table for this capacity: a power of two of buckets, at most
    // 7/8 full (fewer than 8 buckets: all but one).
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    block(capacity * std::mem::size_of::<Bucket<K, V>>())
        + block(buckets * std::mem::size_of::<usize>() + buckets + 16)
}

/// What the allocator takes for a block of `n` bytes (none for 0): a header
/// word, rounded up to 16 bytes, at least 32 (glibc's malloc; others round
/// alike).
fn block(n: usize) -> u64 {
    if n == 0 {
        0
    } else {
        ((n + 8).div_ceil(16) * 16).max(32) as u64
    }
}

/// The heap a value owns (its inline size is counted with the map entry
/// holding it).
fn value_heap(value: &Value) -> u64 {
    let size = std::mem::size_of::<Value>();
    match value {
        Value::Text(s) => block(s.capacity()),
        Value::Bytes(b) => block(b.capacity()),
        Value::Array(items) => {
            block(items.capacity() * size) + items.iter().map(value_heap).sum::<u64>()
        }
        Value::Map(pairs) => {
            block(pairs.capacity() * 2 * size)
                + pairs
                    .iter()
                    .map(|(k, v)| value_heap(k) + value_heap(v))
                    .sum::<u64>()
        }
        Value::Tag(_, inner) => block(size) + value_heap(inner),
        _ => 0,
    }
}
