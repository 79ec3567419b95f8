//! Freshness: max age and stale-while-revalidate, over a real SQLite master
//! (and a persisted `RedbCache` for the restart), with a clock the test moves
//! by hand.
//!
//! 1. A slot older than the max age is a miss; younger, a hit.
//! 2. Within the stale-while-revalidate window a slot is served at once and
//!    refreshed once in the background (single flight), then served fresh.
//! 3. A refresh that overlaps a write does not install its rows (fenced).
//! 4. A refresh that fails keeps the stale slot serving within its window;
//!    past the window the read fails as a cold read does.
//! 5. A clock set back never makes a slot immortal.
//! 6. A read that misses while the slot's refresh is in flight joins it.
//! 7. With a window, a (re)subscribe marks slots stale instead of dropping
//!    them: an app restarting over a persisted `RedbCache` answers at once,
//!    never serves those slots as fresh, and refreshes them.

mod common;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ciborium::Value;
use common::{Instrumented, PATIENCE};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{Cache, LiveTable, ManualClock, ManualLiveStream, MemCache, RedbCache};
use vantage_types::Record;

const KEY: &str = "products";
const ROW: &str = "p02_brioche";
const MAX_AGE: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(30);

fn price(p: i64) -> Record<Value> {
    let mut record = Record::new();
    record.insert("price".to_string(), Value::Integer(p.into()));
    record
}

fn clock() -> ManualClock {
    ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

/// A seeded SQLite master, its probe, a MemCache, a clock the test moves,
/// and a LiveTable over them with the max age (and `window`, if any).
struct Setup {
    master: common::Master,
    probe: Arc<common::Probe>,
    cache: Arc<MemCache>,
    clock: ManualClock,
    live: LiveTable,
}

async fn setup(window: Option<Duration>) -> Setup {
    let master = common::sqlite_master("product").await;
    let (table, probe) = Instrumented::wrap(master.table.clone());
    let clock = clock();
    let cache = Arc::new(MemCache::new());
    let mut live = LiveTable::new(table, KEY, cache.clone()).with_max_age(MAX_AGE);
    if let Some(window) = window {
        live = live.with_stale_while_revalidate(window);
    }
    let live = live.with_clock(Arc::new(clock.clone()));
    Setup {
        master,
        probe,
        cache,
        clock,
        live,
    }
}

async fn price_of(live: &LiveTable) -> i64 {
    let row = live
        .get_value(&ROW.to_string())
        .await
        .expect("read")
        .expect("the row exists");
    common::int_field(&row, "price").expect("a price")
}

/// Wait for `condition`, napping a millisecond in between (background work
/// the test has no other handle on); panics after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: never happened");
}

#[tokio::test]
async fn a_slot_older_than_its_max_age_is_a_miss() {
    let Setup {
        master,
        probe,
        clock,
        live,
        ..
    } = setup(None).await;

    let first = price_of(&live).await;
    assert_eq!(probe.reads(), 1);
    // The master changes behind the cache's back (no live stream).
    master
        .table
        .patch_value(&ROW.to_string(), &price(first + 7))
        .await
        .unwrap();

    clock.advance(MAX_AGE);
    assert_eq!(price_of(&live).await, first, "at its max age: still a hit");
    assert_eq!(probe.reads(), 1);

    clock.advance(Duration::from_millis(1));
    assert_eq!(price_of(&live).await, first + 7, "past its max age: a miss");
    assert_eq!(probe.reads(), 2);
    let stats = live.stats();
    assert_eq!((stats.hits, stats.misses, stats.stale_hits), (1, 2, 0));

    // The new slot is young again.
    assert_eq!(price_of(&live).await, first + 7);
    assert_eq!(probe.reads(), 2);
}

/// Change the row's price to `first + 1` on the master, behind the cache,
/// age the slot into its window, and hold the next master read (the
/// refresh's) once it has its answer.
async fn change_behind_and_age(
    master: &common::Master,
    probe: &common::Probe,
    clock: &ManualClock,
    first: i64,
) -> common::Held {
    master
        .table
        .patch_value(&ROW.to_string(), &price(first + 1))
        .await
        .unwrap();
    clock.advance(MAX_AGE + WINDOW / 2);
    probe.hold_reads(1)
}

#[tokio::test]
async fn a_stale_slot_is_served_at_once_and_refreshed_once() {
    let Setup {
        master,
        probe,
        clock,
        live,
        ..
    } = setup(Some(WINDOW)).await;

    let first = price_of(&live).await;
    // Hold the refresh's master read, so that every stale hit meanwhile
    // finds it in flight.
    let mut held = change_behind_and_age(&master, &probe, &clock, first).await;
    for _ in 0..5 {
        assert_eq!(price_of(&live).await, first, "stale: served at once");
    }
    held.fetched().await;
    let stats = live.stats();
    assert_eq!(stats.stale_hits, 5);
    assert_eq!(stats.refreshes, 1, "one refresh for the slot at a time");
    assert_eq!(probe.reads(), 2);

    held.release(1);
    let check = live.clone();
    eventually("the refresh lands", || {
        let live = check.clone();
        async move { price_of(&live).await == first + 1 }
    })
    .await;
    let stats = live.stats();
    assert_eq!(probe.reads(), 2, "the refreshed slot serves, no more reads");
    assert_eq!(stats.refreshes, 1);
    assert_eq!(stats.failed_refreshes, 0);
    // Fresh now: no stale hit, no refresh.
    let stale_hits = stats.stale_hits;
    price_of(&live).await;
    assert_eq!(live.stats().stale_hits, stale_hits);
}

/// A read that misses while the slot's refresh is in flight (the slot went
/// past its window meanwhile) joins the refresh: one master read for both.
#[tokio::test]
async fn an_ordinary_miss_joins_the_refresh_in_flight() {
    let Setup {
        master,
        probe,
        clock,
        live,
        ..
    } = setup(Some(WINDOW)).await;

    let first = price_of(&live).await;
    let mut held = change_behind_and_age(&master, &probe, &clock, first).await;
    assert_eq!(price_of(&live).await, first, "stale: served at once");
    held.fetched().await;
    assert_eq!(live.stats().refreshes, 1);

    // Past the window: an ordinary miss, which joins the refresh.
    clock.advance(WINDOW);
    let miss = tokio::spawn({
        let live = live.clone();
        async move { price_of(&live).await }
    });
    eventually("the miss joined the refresh", || {
        let live = live.clone();
        async move { live.stats().coalesced == 1 }
    })
    .await;
    held.release(1);
    assert_eq!(
        tokio::time::timeout(PATIENCE, miss).await.unwrap().unwrap(),
        first + 1,
        "the miss answers with the refresh's rows"
    );
    assert_eq!(
        probe.reads(),
        2,
        "the first fill and the refresh, nothing more"
    );
}

#[tokio::test]
async fn a_refresh_that_overlaps_a_write_stores_nothing() {
    common::init_tracing();
    let Setup {
        // Keeps the database file alive.
        master: _master,
        probe,
        cache,
        clock,
        live,
        ..
    } = setup(Some(WINDOW)).await;

    let first = price_of(&live).await;
    clock.advance(MAX_AGE + Duration::from_secs(1));
    // The refresh fetches the old price and is held there.
    let mut held = probe.hold_reads(1);
    assert_eq!(price_of(&live).await, first, "stale hit");
    held.fetched().await;
    // A write is acknowledged while the refresh is out.
    live.patch_value(&ROW.to_string(), &price(first + 100))
        .await
        .unwrap();
    held.release(1);
    // Let the refresh finish (it has nothing to wait on but the fill).
    let key = live.id_cache_key(ROW);
    eventually("the refresh ends", || async { probe.reads() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Its pre-write rows were not installed: the slot is empty.
    assert!(
        cache.get(&key).await.unwrap().is_none(),
        "a fenced refresh left rows in {key}"
    );
    assert_eq!(price_of(&live).await, first + 100);
}

#[tokio::test]
async fn a_failed_refresh_keeps_serving_within_the_window() {
    let Setup {
        // Keeps the database file alive.
        master: _master,
        probe,
        clock,
        live,
        ..
    } = setup(Some(WINDOW)).await;

    let first = price_of(&live).await;
    clock.advance(MAX_AGE + Duration::from_secs(1));
    probe.down.store(true, Ordering::SeqCst);
    assert_eq!(price_of(&live).await, first, "stale hit while down");
    let check = live.clone();
    eventually("the refresh fails", || {
        let live = check.clone();
        async move { live.stats().failed_refreshes == 1 }
    })
    .await;
    // Still served (and refreshed again) within the window.
    assert_eq!(price_of(&live).await, first);
    // Past the window: a miss, and the master's error.
    clock.advance(WINDOW);
    let error = live.get_value(&ROW.to_string()).await.unwrap_err();
    assert!(error.to_string().contains(common::DOWN), "{error}");
    // Back up: the next read fills again.
    probe.down.store(false, Ordering::SeqCst);
    assert_eq!(price_of(&live).await, first);
}

#[tokio::test]
async fn a_clock_set_back_never_makes_a_slot_immortal() {
    let Setup {
        // Keeps the database file alive.
        master: _master,
        probe,
        clock,
        live,
        ..
    } = setup(None).await;
    price_of(&live).await;
    assert_eq!(probe.reads(), 1);
    // The wall clock is corrected back by a day: the slot lies in the
    // future, further than its max age: a miss, not a slot for a day.
    clock.set_back(Duration::from_secs(86_400));
    price_of(&live).await;
    assert_eq!(probe.reads(), 2);
    // The new slot ages normally from the corrected clock.
    clock.advance(MAX_AGE + Duration::from_secs(1));
    price_of(&live).await;
    assert_eq!(probe.reads(), 3);
}

/// Fill a persisted `RedbCache`, change the master while the app is down,
/// restart over the same folder with a live stream: with a window the first
/// read answers from disk as stale and refreshes; without, it misses.
#[tokio::test]
async fn a_resubscribe_marks_slots_stale_instead_of_dropping_them() {
    for window in [Some(WINDOW), None] {
        let master = common::sqlite_master("product").await;
        let (table, probe) = Instrumented::wrap(master.table.clone());
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let cache = RedbCache::open(dir.path()).expect("open redb cache");
            let live = LiveTable::new(table.clone(), KEY, Arc::new(cache));
            price_of(&live).await
        };
        assert_eq!(probe.reads(), 1);
        master
            .table
            .patch_value(&ROW.to_string(), &price(first + 3))
            .await
            .unwrap();

        // The app restarts over the same folder.
        let cache = RedbCache::open(dir.path()).expect("reopen redb cache");
        let source = ManualLiveStream::new();
        let mut live = LiveTable::new(table.clone(), KEY, Arc::new(cache))
            .with_live_stream(Arc::new(source.clone()));
        if let Some(window) = window {
            live = live.with_stale_while_revalidate(window);
        }
        let mut status = live.live_stream_status().unwrap();
        live.start_live_stream();
        tokio::time::timeout(PATIENCE, status.wait_for(|s| s.subscribed))
            .await
            .expect("subscribed in time")
            .expect("the event task runs");

        match window {
            Some(_) => {
                assert_eq!(price_of(&live).await, first, "served from disk, stale");
                let stats = live.stats();
                assert_eq!((stats.stale_hits, stats.refreshes), (1, 1));
                let check = live.clone();
                eventually("the refresh lands", || {
                    let live = check.clone();
                    async move { price_of(&live).await == first + 3 }
                })
                .await;
                assert_eq!(probe.reads(), 2);
            }
            None => {
                assert_eq!(price_of(&live).await, first + 3, "dropped: a miss");
                assert_eq!(live.stats().stale_hits, 0);
                assert_eq!(probe.reads(), 2);
            }
        }
    }
}
