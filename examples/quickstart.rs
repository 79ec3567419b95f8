//! Quickstart: a LiveTable over an embedded SQLite master, showing a miss
//! and then a hit.
//!
//! ```text
//! cargo run --example quickstart [-- <sqlite file>]
//! ```
//!
//! Creates `target/quickstart/bakery.sqlite` or the given file (seeded with
//! the bakery products on first run), wraps the product table in a `LiveTable` with an
//! in-memory cache, and lists it twice: the first read goes to SQLite and
//! fills the cache, the second is served from the cache.

#[path = "../tests/common/bakery.rs"]
#[allow(dead_code)]
mod bakery;
#[path = "support/products.rs"]
mod products;

use std::sync::Arc;
use std::time::Instant;

use vantage_dataset::prelude::ReadableValueSet;
use vantage_live::{Cache, LiveTable, MemCache};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The master: a SQLite file, created and seeded on first run (the first
    // argument, or target/quickstart/bakery.sqlite).
    let file = match std::env::args_os().nth(1) {
        Some(path) => std::path::PathBuf::from(path),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/quickstart/bakery.sqlite")
        }
    };
    let master = products::sqlite_products(&file).await?;

    // Wrap it. "products" is the cache key: the caller's to choose.
    let cache = Arc::new(MemCache::new());
    let live = LiveTable::new(master, "products", cache.clone());

    for attempt in [
        "first (miss: reads SQLite)",
        "second (hit: served from the cache)",
    ] {
        let started = Instant::now();
        let rows = live.list_values().await?;
        println!("{attempt}: {} rows in {:?}", rows.len(), started.elapsed());
    }
    let slot = live.page_cache_key(None);
    let cached = cache.get(&slot).await?.map(|c| c.rows.len());
    println!("cache slot {slot:?} holds {cached:?} rows");
    Ok(())
}
