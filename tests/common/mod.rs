//! Shared fixtures: the bakery model, real seeded masters, and helpers.
#![allow(dead_code, unused_imports)]

pub mod bakery;
pub mod instrumented;
pub mod masters;

pub use bakery::Model;
pub use instrumented::{Instrumented, Probe, DOWN};
pub use masters::{embedded_masters, redb_master, seed, sqlite_master, Master};

use ciborium::Value;
use indexmap::IndexMap;
use vantage_dataset::prelude::ReadableValueSet;
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

/// Rows keyed by id, as every read returns them.
pub type Rows = IndexMap<String, Record<Value>>;

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
