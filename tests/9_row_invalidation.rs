//! Row-level invalidation (`with_row_invalidation`) over real masters
//! (redb, SQLite, PostgreSQL) and the in-process backends (`MemCache`, `RedbCache` with
//! and without its memory front).
//!
//! 1. Scroll, patch one row, scroll again: only the page holding the row is
//!    read again (without row invalidation: every page).
//! 2. A delete keeps the pages before the row and drops the rest; counts
//!    follow.
//! 3. An insert drops every list and count and the new row's own (absent)
//!    `get` slot, not other rows' `get` slots.
//! 4. Live events that name a row drop what a write would; a bare `Changed`
//!    drops everything.
//! 5. Fallbacks to a whole drop: `delete_all`; a write that overlaps
//!    another; slots an earlier process left in a `RedbCache` (until the
//!    first whole drop).
//!
//! Every page read is checked against the master's own answer, so a slot
//! kept when it should have gone fails the test whatever the read counts.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ciborium::Value;
use common::hooked::{Call, Hooked, Hooks};
use common::scroll::{grow_products, page, scroll};
use common::{Instrumented, Master, Probe, PATIENCE};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{Cache, LiveEvent, LiveTable, ManualLiveStream, RedbCache};
use vantage_table::any::AnyTable;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

const ROWS: usize = 200;
const IPP: i64 = 10;
const PAGES: i64 = 20;

fn price(p: i64) -> Record<Value> {
    let mut record = Record::new();
    record.insert("price".to_string(), Value::Integer(p.into()));
    record
}

/// The id of the first row of `page` (at [`IPP`]), as the master has it.
async fn first_id_on(master: &AnyTable, page: i64) -> String {
    let rows = common::master_rows(
        master,
        Some(vantage_table::pagination::Pagination::new(page, IPP)),
    )
    .await;
    rows.keys().next().expect("the page has rows").clone()
}

/// Every master (redb, SQLite, and PostgreSQL where it runs: each lists
/// in id order, which no patch changes), grown to [`ROWS`] rows.
async fn masters() -> Vec<Master> {
    let mut masters = common::all_masters("product").await;
    for master in &mut masters {
        grow_products(&master.table, ROWS).await;
    }
    masters
}

/// A LiveTable with row invalidation over `master` (its reads counted by
/// the probe) and `cache`.
fn row_live(master: &Master, cache: Arc<dyn Cache>) -> (LiveTable, Arc<Probe>) {
    let (table, probe) = Instrumented::wrap(master.table.clone());
    let live = LiveTable::new(table, "products", cache).with_row_invalidation();
    (live, probe)
}

/// Start `live`'s event task and wait for its first subscription.
async fn subscribed(live: &LiveTable) -> vantage_live::EventStatus {
    let mut status = live.live_stream_status().expect("a stream");
    live.start_live_stream();
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.subscribed))
        .await
        .expect("subscribed")
        .expect("task alive");
    status
}

/// Push `event` and wait until the event task has handled it.
async fn handled(
    status: &mut vantage_live::EventStatus,
    source: &ManualLiveStream,
    event: LiveEvent,
) {
    let events = status.current().events;
    source.push(event);
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.events > events))
        .await
        .expect("event handled")
        .expect("task alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scroll_edit_scroll_reads_the_edited_page_only() {
    for master in masters().await {
        for cache in common::storing_caches() {
            let what = format!("{} over {}", master.kind, cache.name);
            let (live, probe) = row_live(&master, cache.cache.clone());
            scroll(&live, &master.table, 1..=PAGES, IPP, &what).await;
            assert_eq!(probe.reads(), PAGES as usize, "{what}: first pass");

            let id = first_id_on(&master.table, 3).await;
            live.patch_value(&id, &price(4242)).await.unwrap();
            scroll(&live, &master.table, 1..=PAGES, IPP, &what).await;
            assert_eq!(
                probe.reads(),
                PAGES as usize + 1,
                "{what}: the second pass reads page 3 only"
            );
            let edited = live.get_value(&id).await.unwrap().expect("the row");
            assert_eq!(common::int_field(&edited, "price"), Some(4242), "{what}");
            assert_eq!(live.stats().row_invalidations, 1, "{what}");
            assert_eq!(live.stats().invalidations, 0, "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_it_an_edit_drops_every_page() {
    let master = common::sqlite_master("product").await;
    grow_products(&master.table, ROWS).await;
    let (table, probe) = Instrumented::wrap(master.table.clone());
    let live = LiveTable::new(table, "products", Arc::new(vantage_live::MemCache::new()));
    scroll(&live, &master.table, 1..=PAGES, IPP, "plain").await;
    let id = first_id_on(&master.table, 3).await;
    live.patch_value(&id, &price(4242)).await.unwrap();
    scroll(&live, &master.table, 1..=PAGES, IPP, "plain").await;
    assert_eq!(
        probe.reads(),
        2 * PAGES as usize,
        "the whole cache_key went"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_keeps_the_pages_before_the_row() {
    for master in masters().await {
        for cache in common::storing_caches() {
            let what = format!("{} over {}", master.kind, cache.name);
            // Each backend in turn deletes a row of the one master.
            let rows = master.table.get_count().await.unwrap();
            let (live, probe) = row_live(&master, cache.cache.clone());
            scroll(&live, &master.table, 1..=PAGES, IPP, &what).await;
            assert_eq!(live.get_count().await.unwrap(), rows, "{what}");
            let before = probe.reads();

            let id = first_id_on(&master.table, 3).await;
            live.delete(&id).await.unwrap();
            scroll(&live, &master.table, 1..=PAGES, IPP, &what).await;
            assert_eq!(
                probe.reads() - before,
                PAGES as usize - 2,
                "{what}: pages 3..=20 shifted, 1 and 2 did not"
            );
            assert_eq!(live.get_count().await.unwrap(), rows - 1, "{what}");
            assert_eq!(live.get_value(&id).await.unwrap(), None, "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_insert_drops_lists_and_counts_but_not_other_rows() {
    for master in masters().await {
        for (n, cache) in common::storing_caches().into_iter().enumerate() {
            let what = format!("{} over {}", master.kind, cache.name);
            // Each backend in turn inserts a row into the one master.
            let rows = master.table.get_count().await.unwrap();
            let (live, probe) = row_live(&master, cache.cache.clone());
            let kept = first_id_on(&master.table, 5).await;
            let new = format!("q5{n:02}");
            scroll(&live, &master.table, 1..=2, IPP, &what).await;
            assert!(live.get_value(&kept).await.unwrap().is_some(), "{what}");
            assert_eq!(live.get_value(&new).await.unwrap(), None, "{what}");
            assert_eq!(live.get_count().await.unwrap(), rows, "{what}");
            let before = probe.reads();

            live.insert_value(&new, &common::extra_product("new"))
                .await
                .unwrap();
            assert!(
                live.get_value(&new).await.unwrap().is_some(),
                "{what}: the absent row's slot went"
            );
            assert!(live.get_value(&kept).await.unwrap().is_some(), "{what}");
            assert_eq!(live.get_count().await.unwrap(), rows + 1, "{what}");
            scroll(&live, &master.table, 1..=2, IPP, &what).await;
            assert_eq!(
                probe.reads() - before,
                4,
                "{what}: the new row, the count and both pages; not the other row"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_that_name_a_row_drop_what_a_write_would() {
    for master in masters().await {
        let what = master.kind;
        let source = ManualLiveStream::new();
        let (live, probe) = row_live(&master, Arc::new(vantage_live::MemCache::new()));
        let live = live.with_live_stream(Arc::new(source.clone()));
        let mut status = subscribed(&live).await;
        scroll(&live, &master.table, 1..=5, IPP, what).await;
        let before = probe.reads();

        // A change behind the LiveTable's back, reported by row.
        let id = first_id_on(&master.table, 2).await;
        master.table.patch_value(&id, &price(77)).await.unwrap();
        handled(&mut status, &source, LiveEvent::updated(id.clone())).await;
        scroll(&live, &master.table, 1..=5, IPP, what).await;
        assert_eq!(probe.reads() - before, 1, "{what}: page 2 only");

        // A bare change names nothing: every page goes.
        master.table.patch_value(&id, &price(78)).await.unwrap();
        handled(&mut status, &source, LiveEvent::Changed).await;
        scroll(&live, &master.table, 1..=5, IPP, what).await;
        assert_eq!(probe.reads() - before, 6, "{what}: all five pages");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_all_drops_everything() {
    let master = common::redb_master("product").await;
    grow_products(&master.table, 30).await;
    let (live, probe) = row_live(&master, Arc::new(vantage_live::MemCache::new()));
    scroll(&live, &master.table, 1..=3, IPP, "warm").await;
    assert_eq!(probe.reads(), 3);
    live.delete_all().await.unwrap();
    scroll(&live, &master.table, 1..=3, IPP, "after delete_all").await;
    assert_eq!(probe.reads(), 6);
    assert_eq!(live.get_count().await.unwrap(), 0);
}

/// Holds every write to one row until released, and tells when it is held.
#[derive(Default)]
struct HoldRow {
    row: String,
    holding: tokio::sync::Notify,
    release: tokio::sync::Notify,
    held: AtomicBool,
}

impl Hooks for HoldRow {
    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        id: Option<&'a str>,
        call: Call<'a, T>,
    ) -> Call<'a, T> {
        if id != Some(self.row.as_str()) || self.held.swap(true, Ordering::SeqCst) {
            return call;
        }
        Box::pin(async move {
            let result = call.await;
            // Applied at the master; the answer waits.
            self.holding.notify_one();
            self.release.notified().await;
            result
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_writes_drop_the_whole_cache_key() {
    let master = common::redb_master("product").await;
    grow_products(&master.table, 50).await;
    let slow_row = first_id_on(&master.table, 5).await;
    let other_row = first_id_on(&master.table, 1).await;
    let hooks = Arc::new(HoldRow {
        row: slow_row.clone(),
        ..HoldRow::default()
    });
    let (table, probe) = Instrumented::wrap(Hooked::wrap(master.table.clone(), hooks.clone()));
    let cache: Arc<dyn Cache> = Arc::new(vantage_live::MemCache::new());
    // Two LiveTables (two write queues) sharing the cache and cache_key.
    let a = LiveTable::new(table.clone(), "products", cache.clone()).with_row_invalidation();
    let b = LiveTable::new(table, "products", cache).with_row_invalidation();
    scroll(&a, &master.table, 1..=5, IPP, "warm").await;
    assert_eq!(probe.reads(), 5);

    // `a`'s patch of page 5's row is at the master, its answer held; `b`
    // patches page 1's row meanwhile. Neither may drop rows only: each
    // overlapped the other.
    let slow = {
        let a = a.clone();
        let row = slow_row.clone();
        tokio::spawn(async move { a.patch_value(&row, &price(1)).await })
    };
    tokio::time::timeout(PATIENCE, hooks.holding.notified())
        .await
        .expect("the slow write reached the master");
    b.patch_value(&other_row, &price(2)).await.unwrap();
    hooks.release.notify_one();
    slow.await.unwrap().unwrap();

    scroll(&a, &master.table, 1..=5, IPP, "after").await;
    assert_eq!(probe.reads(), 10, "every page read again");
    assert_eq!(a.stats().row_invalidations + b.stats().row_invalidations, 0);

    // Alone again: row level again.
    b.patch_value(&other_row, &price(3)).await.unwrap();
    scroll(&a, &master.table, 1..=5, IPP, "alone").await;
    assert_eq!(probe.reads(), 11, "page 1 only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slots_left_by_an_earlier_run_fall_back_to_a_whole_drop_once() {
    let master = common::redb_master("product").await;
    grow_products(&master.table, 50).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let cache: Arc<dyn Cache> = Arc::new(RedbCache::open(dir.path()).unwrap());
        let (live, _) = row_live(&master, cache);
        scroll(&live, &master.table, 1..=5, IPP, "first run").await;
    }
    // The cache is closed once every clone is gone (its tasks included).
    let cache: Arc<dyn Cache> = tokio::time::timeout(PATIENCE, async {
        loop {
            match RedbCache::open(dir.path()) {
                Ok(cache) => break Arc::new(cache),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("the first run's cache closed");
    let (live, probe) = row_live(&master, cache);
    scroll(&live, &master.table, 1..=5, IPP, "restart").await;
    assert_eq!(probe.reads(), 0, "served from the file");

    // What the earlier run stored is not in this run's index: the first
    // patch drops the whole cache_key...
    let id = first_id_on(&master.table, 2).await;
    live.patch_value(&id, &price(5)).await.unwrap();
    scroll(&live, &master.table, 1..=5, IPP, "first patch").await;
    assert_eq!(probe.reads(), 5, "every page");
    // ...after which the index knows every slot.
    live.patch_value(&id, &price(6)).await.unwrap();
    scroll(&live, &master.table, 1..=5, IPP, "second patch").await;
    assert_eq!(probe.reads(), 6, "page 2 only");
    let row = page(&live, &master.table, 2, IPP, "check").await;
    assert_eq!(common::int_field(&row[&id], "price"), Some(6));
}

/// A cache shared by processes cannot vouch for what its slots hold (other
/// processes fill them): with row invalidation on, every write still drops
/// the whole cache_key there, and pages stay right. Two `RedisCache`
/// instances stand for two processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_shared_by_processes_drops_the_whole_cache_key() {
    let Some(space) = common::redis::RedisSpace::new(
        "a_cache_shared_by_processes_drops_the_whole_cache_key",
        "rows",
    )
    .await
    else {
        return;
    };
    let master = common::redb_master("product").await;
    grow_products(&master.table, 50).await;
    let (a, probe) = row_live(&master, Arc::new(space.cache().await));
    let (b, _) = row_live(&master, Arc::new(space.cache().await));
    scroll(&a, &master.table, 1..=5, IPP, "warm").await;
    assert_eq!(probe.reads(), 5);
    let id = first_id_on(&master.table, 2).await;
    b.patch_value(&id, &price(9)).await.unwrap();
    scroll(&a, &master.table, 1..=5, IPP, "after").await;
    assert_eq!(probe.reads(), 10, "every page, through the other instance");
    assert_eq!(b.stats().row_invalidations, 0);
    assert_eq!(b.stats().invalidations, 1, "a whole drop");
}

/// A (re)subscribe with stale-while-revalidate marks every slot stale:
/// they may miss changes made while nobody listened, so the next write
/// drops the whole cache_key instead of keeping them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_resubscribe_marks_slots_stale_the_next_write_drops_everything() {
    let master = common::redb_master("product").await;
    grow_products(&master.table, 50).await;
    let source = ManualLiveStream::new();
    let (live, probe) = row_live(&master, Arc::new(vantage_live::MemCache::new()));
    let live = live
        .with_max_age(std::time::Duration::from_secs(3600))
        .with_stale_while_revalidate(std::time::Duration::from_secs(3600))
        .with_live_stream(Arc::new(source.clone()));
    let mut status = subscribed(&live).await;
    scroll(&live, &master.table, 1..=3, IPP, "warm").await;
    let id = first_id_on(&master.table, 2).await;
    live.patch_value(&id, &price(1)).await.unwrap();
    scroll(&live, &master.table, 1..=3, IPP, "row level").await;
    assert_eq!(probe.reads(), 4, "page 2 only, before any gap");

    // The stream drops; the task subscribes again and marks slots stale.
    source.disconnect();
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.subscriptions >= 2))
        .await
        .expect("subscribed again")
        .expect("task alive");
    live.patch_value(&id, &price(2)).await.unwrap();
    let stale_hits = live.stats().stale_hits;
    scroll(&live, &master.table, 1..=3, IPP, "after the gap").await;
    assert_eq!(probe.reads(), 7, "every page read again");
    assert_eq!(live.stats().stale_hits, stale_hits, "none served stale");
}
