//! Shared fixtures: the bakery model, real seeded masters, and helpers.
#![allow(dead_code, unused_imports)]

pub mod bakery;
pub mod faulty_cache;
pub mod hooked;
pub mod instrumented;
pub mod latency;
pub mod masters;
pub mod nats;
pub mod postgres;
pub mod proxy;
pub mod recording;
pub mod redis;
pub mod rng;
pub mod scroll;
pub mod slots;
pub mod stacks;
pub mod surreal;
pub mod surreal_keys;
pub mod unreachable;

pub use bakery::Model;
pub use faulty_cache::{Fault, FaultyCache};
pub use instrumented::{Held, Instrumented, Probe, DOWN};
pub use latency::{Delays, Latency};
pub use masters::{embedded_masters, redb_master, seed, sqlite_master, Master};
pub use postgres::{all_masters, postgres_master, PgSchema};
pub use recording::{Recorder, Recording, PATIENCE};
pub use rng::{Rng, SeedGuard};
pub use stacks::live;
pub use surreal::{surreal_master, SurrealBase};

use ciborium::Value;
use indexmap::IndexMap;
use vantage_dataset::prelude::ReadableValueSet;
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

/// Rows keyed by id, as every read returns them.
pub type Rows = IndexMap<String, Record<Value>>;

/// A full `product` row (every column of the bakery model).
pub fn product(name: &str, price: i64) -> Record<Value> {
    [
        ("name", Value::Text(name.to_string())),
        ("calories", Value::Integer(100.into())),
        ("price", Value::Integer(price.into())),
        ("is_deleted", Value::Bool(false)),
        ("inventory_stock", Value::Integer(1.into())),
        ("bakery_id", Value::Text("rye_and_co".to_string())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One field of a row, as text (`Text` as is, anything else debug-printed).
pub fn field(record: &Record<Value>, name: &str) -> String {
    match record.get(name) {
        Some(Value::Text(t)) => t.clone(),
        Some(other) => format!("{other:?}"),
        None => "<missing>".to_string(),
    }
}

/// The integer value of one field, if it has one.
pub fn int_field(record: &Record<Value>, name: &str) -> Option<i64> {
    match record.get(name) {
        Some(Value::Integer(i)) => i64::try_from(*i).ok(),
        _ => None,
    }
}

/// Install a test subscriber once; `RUST_LOG=vantage_live=debug` shows the
/// cache and queue activity.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// What the master itself answers for `pagination`, read on a private clone
/// (the caller's handle keeps its own pagination).
pub async fn master_rows(master: &AnyTable, pagination: Option<Pagination>) -> Rows {
    let mut table = master.clone();
    table.set_pagination(pagination);
    table.list_values().await.expect("direct master read")
}

/// A product row that is not in the seed, for inserting behind a cache's back.
pub fn extra_product(name: &str) -> Record<Value> {
    let mut record = Record::new();
    record.insert("name".to_string(), Value::Text(name.to_string()));
    record.insert("calories".to_string(), Value::Integer(123.into()));
    record.insert("price".to_string(), Value::Integer(99.into()));
    record.insert("is_deleted".to_string(), Value::Bool(false));
    record.insert("inventory_stock".to_string(), Value::Integer(7.into()));
    record.insert(
        "bakery_id".to_string(),
        Value::Text("rye_and_co".to_string()),
    );
    record
}

/// The number of seeded rows of a bakery entity.
pub fn seed_len(entity: &str) -> usize {
    Model::load().entity(entity).rows.len()
}

/// `got` holds the same rows as `expected`, in the same order (`IndexMap`'s
/// own `==` ignores order).
pub fn assert_rows(got: &Rows, expected: &Rows, what: &str) {
    let got_ids: Vec<_> = got.keys().collect();
    let ids: Vec<_> = expected.keys().collect();
    assert_eq!(got_ids, ids, "{what}: row ids and their order");
    assert_eq!(got, expected, "{what}: row contents");
}

/// A cache backend under test and what keeps it alive.
pub struct TestCache {
    /// `MemCache` or `RedbCache`.
    pub name: &'static str,
    /// The backend.
    pub cache: std::sync::Arc<dyn vantage_live::Cache>,
    /// The redb folder, if any.
    pub dir: Option<tempfile::TempDir>,
}

/// One fresh instance of every backend that stores: `MemCache`, and a
/// `RedbCache` in a temp folder with and without its memory front.
pub fn storing_caches() -> Vec<TestCache> {
    let dir = tempfile::tempdir().expect("temp dir");
    let redb = vantage_live::RedbCache::open(dir.path()).expect("open redb cache");
    let disk_dir = tempfile::tempdir().expect("temp dir");
    let disk_only = vantage_live::RedbCache::open(disk_dir.path())
        .expect("open redb cache")
        .with_memory_front(0);
    vec![
        TestCache {
            name: "RedbCache (disk only)",
            cache: std::sync::Arc::new(disk_only),
            dir: Some(disk_dir),
        },
        TestCache {
            name: "MemCache",
            cache: std::sync::Arc::new(vantage_live::MemCache::new()),
            dir: None,
        },
        TestCache {
            name: "RedbCache",
            cache: std::sync::Arc::new(redb),
            dir: Some(dir),
        },
    ]
}
