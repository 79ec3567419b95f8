//! custom_stack: a `LiveTable` over a tower stack of your own.
//!
//! ```text
//! cargo run --example custom_stack
//! ```
//!
//! Builds the stack with `tower::ServiceBuilder`: this crate's write queue
//! and cache layer, then tower's own timeout and concurrency limit in front
//! of the master (a bakery SQLite table in a temp dir, seeded with the
//! products), and hands it to `LiveTable::from_service`. Then, step by step:
//!
//! 1. a miss: the first read goes to the master (`stats()` counts a miss);
//! 2. a hit: the second read is served from the cache;
//! 3. a write: an insert goes through the stack, and the next read shows it;
//! 4. the LiveTable wrapped as an `AnyTable`, read through generic code;
//! 5. a timed-out read: a small demo layer under the timeout holds master
//!    reads while a switch is on; the caller's error says the request timed
//!    out, and tower's `Elapsed` is found in its `source()` chain.
//!
//! No server needed; it runs in about a second.

#[path = "../tests/common/bakery.rs"]
#[allow(dead_code)]
mod bakery;
#[path = "support/products.rs"]
mod products;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::Value;
use tower::timeout::error::Elapsed;
use tower::ServiceBuilder;
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{CacheLayer, LiveTable, MemCache, StatsSnapshot, TableService, WriteQueueLayer};
use vantage_table::any::AnyTable;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

/// How long a master request may take before tower's timeout gives up.
const TIMEOUT: Duration = Duration::from_millis(300);
/// How long the demo layer holds a master read while the switch is on
/// (much longer than the timeout; the timeout drops it).
const HOLD: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The master: the bakery's product table in a fresh SQLite file.
    let dir = tempfile::tempdir()?;
    let master = products::sqlite_products(&dir.path().join("bakery.sqlite")).await?;
    println!("master: {} rows in SQLite", master.get_count().await?);

    // The stack, outermost first. `slow` is the demo's switch: while it is
    // on, requests that reach the master are held (see step 5).
    let slow = Arc::new(AtomicBool::new(false));
    let cache = CacheLayer::new(Arc::new(MemCache::new()), "products");
    let stack = ServiceBuilder::new()
        .layer(WriteQueueLayer::with_bound(4)) // writes one at a time, in order
        .layer(cache.clone()) // reads from the cache; writes invalidate it
        .timeout(TIMEOUT) // tower: give up on a slow master
        .concurrency_limit(8) // tower: at most 8 master requests at once
        .map_future({
            // The demo only: hold the master's answer while `slow` is on.
            let slow = slow.clone();
            move |answer| {
                let hold = slow.load(Ordering::SeqCst);
                async move {
                    if hold {
                        tokio::time::sleep(HOLD).await;
                    }
                    answer.await
                }
            }
        })
        .service(TableService::new(master.clone()));
    // `with_cache_layer` makes stats() and the slot keys speak of our cache.
    let live = LiveTable::from_service(master, stack).with_cache_layer(&cache);

    println!("\n1. first read (miss: goes to the master)");
    let started = Instant::now();
    let rows = live.list_values().await?;
    println!("   {} rows in {:?}", rows.len(), started.elapsed());
    print_stats(live.stats());

    println!("\n2. second read (hit: served from the cache)");
    let started = Instant::now();
    let rows = live.list_values().await?;
    println!("   {} rows in {:?}", rows.len(), started.elapsed());
    print_stats(live.stats());

    println!("\n3. write: insert p13_bagel through the stack, then read");
    let id = "p13_bagel".to_string();
    live.insert_value(&id, &bagel()).await?;
    let rows = live.list_values().await?;
    let name = rows.get(&id).and_then(|row| row.get("name"));
    println!("   {} rows; {id} is there: name = {name:?}", rows.len());
    print_stats(live.stats());

    println!("\n4. the same LiveTable as an AnyTable");
    let any = AnyTable::from_table_like(live.clone());
    let hits = live.stats().hits;
    let rows = any.list_values().await?;
    println!(
        "   {} rows through AnyTable (table {:?}, columns {:?})",
        rows.len(),
        any.table_name(),
        any.column_names()
    );
    println!("   served from the cache: {}", live.stats().hits > hits);
    print_stats(live.stats());

    println!("\n5. a read that times out (the master is held, the timeout is {TIMEOUT:?})");
    // One row is a slot of its own, not cached yet: this read must go to
    // the master.
    let row = "p04_croissant".to_string();
    slow.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let error = match live.get_value(&row).await {
        Ok(_) => return Err("the held read should have timed out".into()),
        Err(error) => error,
    };
    slow.store(false, Ordering::SeqCst);
    println!(
        "   error after {} ms: {error}",
        started.elapsed().as_millis()
    );
    let mut chain = Vec::new();
    let mut elapsed = false;
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        elapsed |= cause.downcast_ref::<Elapsed>().is_some();
        source = cause.source();
    }
    println!("   source chain: {chain:?}");
    println!("   downcasts to tower::timeout::error::Elapsed: {elapsed}");
    if !elapsed {
        return Err("Elapsed not found in the error's sources".into());
    }
    // The error was not cached: with the master answering again, the same
    // read works.
    let again = live.get_value(&row).await?;
    let name = again.as_ref().and_then(|record| record.get("name"));
    println!("   the same read again, master answering: name = {name:?}");
    print_stats(live.stats());
    Ok(())
}

/// A new product.
fn bagel() -> Record<Value> {
    let mut record = Record::new();
    for (field, value) in [
        ("name", Value::Text("Sesame Bagel".into())),
        ("calories", Value::Integer(280.into())),
        ("price", Value::Integer(130.into())),
        ("is_deleted", Value::Bool(false)),
        ("inventory_stock", Value::Integer(35.into())),
        ("bakery_id", Value::Text("rye_and_co".into())),
    ] {
        record.insert(field.to_string(), value);
    }
    record
}

fn print_stats(stats: StatsSnapshot) {
    println!(
        "   stats: hits {}, misses {}, master reads {}, writes ok {}, invalidations {}",
        stats.hits, stats.misses, stats.master_reads, stats.writes_ok, stats.invalidations
    );
}
