//! Shared fixtures: the bakery model, real seeded masters, and helpers.
#![allow(dead_code, unused_imports)]

pub mod bakery;
pub mod masters;
pub mod recording;

pub use bakery::Model;
pub use masters::{embedded_masters, redb_master, seed, sqlite_master, Master};
pub use recording::{Recorder, Recording, PATIENCE};

use ciborium::Value;
use vantage_types::Record;

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
