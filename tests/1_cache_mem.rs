//! What only `MemCache` promises: its weight cap and time to live (moka's),
//! and clones that share one store.

mod common;

use std::time::{Duration, Instant};

use ciborium::Value;
use std::sync::Arc;

use common::slots::rows;
use vantage_live::cache::SlotKeys;
use vantage_live::{Cache, CachedRows, MemCache};
use vantage_live_layers::View;
use vantage_types::Record;

/// Rows weighing roughly `n` kilobytes.
fn heavy_rows(n: usize) -> CachedRows {
    let mut rows = common::Rows::new();
    for i in 0..n {
        let mut record = Record::new();
        record.insert("blob".to_string(), Value::Text("x".repeat(1000)));
        rows.insert(format!("r{i}"), record);
    }
    CachedRows::new(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_weight_cap_is_honoured() {
    const CAP: u64 = 32 * 1024;
    let cache = MemCache::builder().max_weight(CAP).build();
    let keys: Vec<String> = (0..100)
        .map(|i| SlotKeys::new(format!("k{i}")).list(&View::new()))
        .collect();
    for key in &keys {
        cache.put(key, heavy_rows(2)).await.unwrap();
    }
    cache.run_pending_tasks().await;
    let size = cache.weighted_size();
    assert!(size <= CAP, "weighted size {size} over the cap {CAP}");
    assert!(size > 0, "the cache kept nothing");
    let held = cache.entry_count();
    assert!(held < 100, "every slot was kept ({held})");

    let mut present = 0;
    for key in &keys {
        if cache.get(key).await.unwrap().is_some() {
            present += 1;
        }
    }
    assert!(
        present > 0 && present < 100,
        "{present} of 100 slots present"
    );
    // Least recently used goes first: the last slot stored is still there.
    assert!(cache.get(keys.last().unwrap()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_slot_heavier_than_the_cap_is_not_kept() {
    const CAP: u64 = 4 * 1024;
    let cache = MemCache::builder().max_weight(CAP).build();
    let key = SlotKeys::new("k").list(&View::new());
    cache.put(&key, heavy_rows(10)).await.unwrap();
    cache.run_pending_tasks().await;
    assert!(cache.weighted_size() <= CAP);
    assert!(cache.get(&key).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_time_to_live_expires_slots() {
    // moka keeps its own clock, so this one test waits in real time (bounded).
    const TTL: Duration = Duration::from_millis(100);
    let cache = MemCache::builder().time_to_live(TTL).build();
    let key = SlotKeys::new("k").list(&View::new());
    let start = Instant::now();
    cache.put(&key, rows("a")).await.unwrap();
    let fresh = cache.get(&key).await.unwrap();
    if fresh.is_none() {
        assert!(start.elapsed() >= TTL, "expired before its time to live");
    }
    let deadline = start + Duration::from_secs(5);
    loop {
        if cache.get(&key).await.unwrap().is_none() {
            assert!(start.elapsed() >= TTL, "expired before its time to live");
            break;
        }
        assert!(Instant::now() < deadline, "slot never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Storing again after expiry works.
    cache.put(&key, rows("b")).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_clones_share_one_store() {
    let cache = MemCache::new();
    let clone = cache.clone();
    let k = SlotKeys::new("k");
    let key = k.list(&View::new());
    cache.put(&key, rows("a")).await.unwrap();
    assert!(clone.get(&key).await.unwrap().is_some());
    clone.invalidate_prefix(k.prefix()).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eviction_listener_sees_evictions_with_their_keys_and_causes() {
    use std::sync::Mutex;
    use vantage_live::cache::RemovalCause;
    let seen: Arc<Mutex<Vec<(String, RemovalCause)>>> = Arc::default();
    let cache = MemCache::builder()
        .max_weight(32 * 1024)
        .initial_capacity(16)
        .eviction_listener({
            let seen = seen.clone();
            move |evicted| {
                seen.lock()
                    .unwrap()
                    .push((evicted.key.to_string(), evicted.cause))
            }
        })
        .build();
    let keys: Vec<String> = (0..100)
        .map(|i| SlotKeys::new(format!("k{i}")).list(&View::new()))
        .collect();
    for key in &keys {
        cache.put(key, heavy_rows(2)).await.unwrap();
    }
    // A slot stored again replaces the one before.
    cache.put(&keys[99], heavy_rows(1)).await.unwrap();
    cache.run_pending_tasks().await;
    let seen = seen.lock().unwrap().clone();
    let evicted: Vec<_> = seen
        .iter()
        .filter(|(_, cause)| *cause == RemovalCause::Size)
        .collect();
    assert!(!evicted.is_empty(), "nothing was evicted: {seen:?}");
    assert!(
        evicted.iter().all(|(key, _)| keys.contains(key)),
        "the listener names the slot keys: {evicted:?}"
    );
    assert!(
        seen.iter()
            .any(|(key, cause)| key == &keys[99] && *cause == RemovalCause::Replaced),
        "a replaced slot is reported: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_settings_pass_through_and_the_weigher_stays_the_librarys() {
    // A user's own moka settings: time to idle and a policy by name, and a
    // capacity through the escape hatch. The weigher stays ours, so the cap
    // is in bytes of rows, not in slots.
    let cache = MemCache::builder()
        .time_to_idle(Duration::from_secs(3600))
        .eviction_policy(vantage_live::cache::EvictionPolicy::tiny_lfu())
        .moka(|builder| builder.max_capacity(16 * 1024))
        .build();
    for i in 0..50 {
        let key = SlotKeys::new(format!("k{i}")).list(&View::new());
        cache.put(&key, heavy_rows(2)).await.unwrap();
    }
    cache.run_pending_tasks().await;
    assert!(
        cache.weighted_size() <= 16 * 1024,
        "{} over the 16 KiB cap set through moka",
        cache.weighted_size()
    );
    assert!(cache.entry_count() < 50, "weighed in bytes, not counted");
}
