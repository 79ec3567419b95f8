//! Shared fixtures: the bakery model, real seeded masters, and helpers.
#![allow(dead_code, unused_imports)]

pub mod bakery;
pub mod masters;
pub mod postgres;

pub use bakery::Model;
pub use masters::{embedded_masters, redb_master, seed, sqlite_master, Master};
pub use postgres::{all_masters, postgres_master, PgSchema};

/// Install a test subscriber once; `RUST_LOG=vantage_live=debug` shows the
/// cache and queue activity.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
