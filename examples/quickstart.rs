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

use std::sync::Arc;
use std::time::Instant;

use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{Cache, LiveTable, MemCache};
use vantage_sql::condition::SqliteCondition;
use vantage_sql::primitives::identifier::ident;
use vantage_sql::sqlite::SqliteDB;
use vantage_table::any::AnyTable;
use vantage_table::sorting::OrderBy;
use vantage_table::table::Table;
use vantage_table::traits::table_like::TableLike;
use vantage_types::EmptyEntity;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = bakery::Model::load();
    let product = model.entity("product");

    // The master: a SQLite file, created and seeded on first run (the first
    // argument, or target/quickstart/bakery.sqlite).
    let file = match std::env::args_os().nth(1) {
        Some(path) => std::path::PathBuf::from(path),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/quickstart/bakery.sqlite")
        }
    };
    if let Some(folder) = file.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let db = SqliteDB::connect(&url).await?;
    sqlx::query(&product.create_table_sql(false, true))
        .execute(db.pool())
        .await?;
    let table = bakery::with_columns(
        Table::<SqliteDB, EmptyEntity>::new(product.table.clone(), db),
        product,
    )
    .with_order(OrderBy::ascending(SqliteCondition::from(ident("id"))));
    let master = AnyTable::from_table(table);
    if master.get_count().await? == 0 {
        for (id, record) in product.seed() {
            master.insert_value(&id, &record).await?;
        }
    }

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
