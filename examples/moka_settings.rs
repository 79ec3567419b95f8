//! moka_settings: a `MemCache` built with your own moka settings, under a
//! `LiveTable`.
//!
//! ```text
//! cargo run --example moka_settings
//! ```
//!
//! `MemCache::builder()` takes moka's settings by name: here a weight cap
//! (`max_weight`, in bytes of estimated row weight), a time to idle of
//! 300 ms, and an eviction listener that prints and collects every slot that
//! leaves the cache with its cause. The master is the bakery's product
//! table in a SQLite file in a temp dir.
//!
//! Two slots are filled: the product list and one product. The product is
//! read every 50 ms for half a second, the list is left alone. Past the time
//! to idle the list's slot is gone (the listener saw it leave, `Expired`)
//! and the next list read is a miss; the product, read all along, is still
//! a hit.
//!
//! An expired slot is never served, but moka reports it (and frees its
//! weight) during its housekeeping, which runs now and then during reads and
//! writes, not on a timer. `MemCache::run_pending_tasks` runs it at once, so
//! the listener has heard of the expiry before the example looks.
//!
//! No server needed; it runs in about a second.

#[path = "../tests/common/bakery.rs"]
#[allow(dead_code)]
mod bakery;
#[path = "support/products.rs"]
mod products;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vantage_dataset::prelude::ReadableValueSet;
use vantage_live::cache::RemovalCause;
use vantage_live::{LiveTable, MemCache};

/// A slot not read or stored for this long expires.
const TIME_TO_IDLE: Duration = Duration::from_millis(300);
/// The cap on the estimated weight of the rows held.
const MAX_WEIGHT: u64 = 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let master = products::sqlite_products(&dir.path().join("bakery.sqlite")).await?;

    // The cache, with our own moka settings. The listener runs on whichever
    // thread moka does its housekeeping on: keep it short.
    let evictions: Arc<Mutex<Vec<(String, RemovalCause)>>> = Arc::default();
    let cache = MemCache::builder()
        .max_weight(MAX_WEIGHT)
        .time_to_idle(TIME_TO_IDLE)
        .eviction_listener({
            let evictions = evictions.clone();
            move |evicted| {
                println!(
                    "   listener: {} left the cache: {:?}",
                    evicted.key, evicted.cause
                );
                evictions
                    .lock()
                    .unwrap()
                    .push((evicted.key.to_string(), evicted.cause));
            }
        })
        .build();
    // Clones of a MemCache share one store: keep one to look inside.
    let live = LiveTable::new(master, "products", Arc::new(cache.clone()));
    let id = "p03_cinnamon_roll".to_string();

    println!("fill two slots: the product list and {id}");
    let rows = live.list_values().await?;
    live.get_value(&id).await?;
    cache.run_pending_tasks().await;
    println!(
        "   {} rows listed; the cache holds {} slots, {} bytes (max_weight {MAX_WEIGHT})",
        rows.len(),
        cache.entry_count(),
        cache.weighted_size()
    );
    let stats = live.stats();
    println!("   misses {}, hits {}", stats.misses, stats.hits);

    let wait = TIME_TO_IDLE + Duration::from_millis(200);
    println!("\nread {id} every 50 ms for {wait:?}; leave the list alone (time to idle {TIME_TO_IDLE:?})");
    let started = Instant::now();
    while started.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(50)).await;
        live.get_value(&id).await?;
    }
    println!("   hits so far: {}", live.stats().hits);

    // moka may already have done it during the reads above.
    println!("\nrun moka's pending housekeeping");
    cache.run_pending_tasks().await;
    println!("   the cache holds {} slot(s)", cache.entry_count());
    let list_key = live.page_cache_key(None);
    let expired = evictions
        .lock()
        .unwrap()
        .iter()
        .any(|(key, cause)| *key == list_key && *cause == RemovalCause::Expired);
    println!("   the listener saw {list_key} expire: {expired}");
    if !expired {
        return Err("the list's slot should have expired".into());
    }

    println!("\nread both again");
    let before = live.stats();
    live.list_values().await?;
    let after = live.stats();
    println!(
        "   list: a miss (misses {} -> {}, master reads {} -> {})",
        before.misses, after.misses, before.master_reads, after.master_reads
    );
    if after.misses != before.misses + 1 {
        return Err("the list's read should have been a miss".into());
    }
    let before = after;
    live.get_value(&id).await?;
    let after = live.stats();
    println!(
        "   {id}: a hit, it never idled (hits {} -> {})",
        before.hits, after.hits
    );
    if after.misses != before.misses || after.hits != before.hits + 1 {
        return Err("the product's slot should still be cached".into());
    }
    Ok(())
}
