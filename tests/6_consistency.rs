//! Consistency under concurrency, one guarantee at a time, over real
//! masters and both storing caches (`MemCache`, `RedbCache`):
//!
//! 1. **No stale fill.** A read that missed and is still waiting on the
//!    master when a write (through this LiveTable or another sharing the
//!    cache and cache_key) is acknowledged, or when an event is processed,
//!    does not install its rows; reads issued afterwards see the change.
//! 2. **Single flight.** Concurrent misses of one slot make one master read;
//!    every waiter gets its result; an error reaches every waiter and is not
//!    cached; a waiter that gives up does not cancel the read for the others.
//! 3. **Master outage.** Warm slots keep serving; a cold read returns the
//!    master's error promptly.
//! 4. **Cache faults cost speed, never correctness.** A failing or junk
//!    lookup is a miss, a failing fill still answers, a failing invalidation
//!    makes every sharer of the cache_key bypass the cache until an
//!    invalidation succeeds.
//! 5. **One backend, one state.** Clones of a backend (a `RedbCache` clone
//!    with a memory front of its own, clones behind separate `Arc`s) share
//!    invalidations, the unclean mark and single flight: none serves another
//!    one's stale page.
//!
//! Every interleaving is forced with gates (a master read held after it
//! fetched its rows, an invalidation held after it reached the backend), not
//! with sleeps. The model-based test over random interleavings is
//! `6_model_concurrency.rs`.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ciborium::Value;
use common::{
    assert_rows, master_rows, product, Fault, FaultyCache, Instrumented, Master, Rows, TestCache,
    DOWN, PATIENCE,
};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{Cache, EventStatus, LiveEvent, LiveTable, ManualLiveStream, RedbCache};
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

const KEY: &str = "products";
/// A row on the first page (5 per page) of the seeded products.
const ROW: &str = "p02_brioche";

fn page(n: i64) -> Option<Pagination> {
    Some(Pagination::new(n, 5))
}

/// `live` showing `pagination`.
fn paged(live: &LiveTable, pagination: Option<Pagination>) -> LiveTable {
    let mut live = live.clone();
    live.set_pagination(pagination);
    live
}

/// A partial row that changes the price.
fn price(p: i64) -> Record<Value> {
    let mut record = Record::new();
    record.insert("price".to_string(), Value::Integer(p.into()));
    record
}

/// Wait for `condition` to hold, yielding (and napping a millisecond) in
/// between; panics after [`PATIENCE`]. For background work the test has no
/// other handle on (a fill finishing on its own task).
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition().await {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: never happened");
}

/// The slot holds nothing, or exactly `expected`.
async fn assert_slot_empty_or(cache: &dyn Cache, key: &str, expected: &Rows, what: &str) {
    match cache.get(key).await.expect("cache get") {
        None => {}
        Some(cached) => assert_rows(&cached.rows, expected, &format!("{what}: the slot")),
    }
}

/// Wait until the live stream's task has handled more than `before` events.
async fn event_processed(status: &mut EventStatus, before: u64) {
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.events > before))
        .await
        .expect("event not handled in time")
        .expect("event task ended");
}

// ── 1. no stale fill ──────────────────────────────────────────────────────

/// Who makes the change a slow read overlaps.
#[derive(Clone, Copy, Debug)]
enum Writer {
    /// A write through the reading LiveTable itself.
    SameTable,
    /// A write through another LiveTable sharing the cache and cache_key.
    OtherTable,
}

#[tokio::test]
async fn a_slow_read_overlapping_an_acknowledged_write_does_not_leave_the_old_page_behind() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for writer in [Writer::SameTable, Writer::OtherTable] {
            for TestCache {
                name,
                cache,
                dir: _dir,
            } in common::storing_caches()
            {
                let what = format!("{} / {name} / {writer:?}", master.kind);
                slow_read_overlapping_a_write(&master, cache, writer, &what).await;
            }
        }
    }
}

async fn slow_read_overlapping_a_write(
    master: &Master,
    cache: Arc<dyn Cache>,
    writer: Writer,
    what: &str,
) {
    let (wrapped, probe) = Instrumented::wrap(master.table.clone());
    let reader = paged(&common::live(wrapped, KEY, cache.clone()), page(1));
    let other = common::live(master.table.clone(), KEY, cache.clone());
    let before = master_rows(&master.table, page(1)).await;
    assert!(before.contains_key(ROW), "{what}: {ROW} is on page 1");

    // A cold read of page 1 fetches the old page and is held there.
    let mut held = probe.hold_reads(1);
    let slow = tokio::spawn({
        let reader = reader.clone();
        async move { reader.list_values().await }
    });
    held.fetched().await;

    // The write is acknowledged while the read is still out.
    let old_price = common::int_field(&before[ROW], "price").unwrap();
    let through = match writer {
        Writer::SameTable => &reader,
        Writer::OtherTable => &other,
    };
    through
        .patch_value(&ROW.to_string(), &price(old_price + 1))
        .await
        .unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let after = master_rows(&master.table, page(1)).await;
    assert_ne!(after, before, "{what}: the write changed page 1");

    // The slow read returns what it fetched (it overlapped the write)...
    held.release(1);
    let got = slow.await.unwrap().unwrap();
    assert_rows(&got, &before, &format!("{what}: the slow read"));
    // ...but does not leave it behind.
    let slot = reader.page_cache_key(page(1));
    assert_slot_empty_or(&*cache, &slot, &after, what).await;
    let reads = probe.reads();
    assert_rows(
        &reader.list_values().await.unwrap(),
        &after,
        &format!("{what}: a read after the write, same table"),
    );
    assert_rows(
        &paged(&other, page(1)).list_values().await.unwrap(),
        &after,
        &format!("{what}: a read after the write, other table"),
    );
    assert_eq!(
        probe.reads(),
        reads + 1,
        "{what}: the new page was read once"
    );
    assert_slot_empty_or(&*cache, &slot, &after, what).await;

    // Put the row back for the next round.
    master
        .table
        .patch_value(&ROW.to_string(), &price(old_price))
        .await
        .unwrap();
}

/// Where the event that overlaps the slow read is handled.
#[derive(Clone, Copy, Debug)]
enum EventOn {
    /// The reading LiveTable has the live stream.
    SameTable,
    /// Another LiveTable sharing the cache and cache_key has it.
    OtherTable,
}

#[tokio::test]
async fn a_slow_read_overlapping_a_processed_event_does_not_leave_the_old_page_behind() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for on in [EventOn::SameTable, EventOn::OtherTable] {
            for TestCache {
                name,
                cache,
                dir: _dir,
            } in common::storing_caches()
            {
                let what = format!("{} / {name} / {on:?}", master.kind);
                slow_read_overlapping_an_event(&master, cache, on, &what).await;
            }
        }
    }
}

async fn slow_read_overlapping_an_event(
    master: &Master,
    cache: Arc<dyn Cache>,
    on: EventOn,
    what: &str,
) {
    let source = ManualLiveStream::new();
    let (wrapped, probe) = Instrumented::wrap(master.table.clone());
    let mut reader = common::live(wrapped, KEY, cache.clone());
    let mut other = common::live(master.table.clone(), KEY, cache.clone());
    match on {
        EventOn::SameTable => reader = reader.with_live_stream(Arc::new(source.clone())),
        EventOn::OtherTable => other = other.with_live_stream(Arc::new(source.clone())),
    }
    let reader = paged(&reader, page(1));
    let mut status = match on {
        EventOn::SameTable => reader.live_stream_status(),
        EventOn::OtherTable => other.live_stream_status(),
    }
    .expect("a live stream");
    reader.start_live_stream();
    other.start_live_stream();
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.subscribed))
        .await
        .expect("subscribed in time");
    let before = master_rows(&master.table, page(1)).await;

    let mut held = probe.hold_reads(1);
    let slow = tokio::spawn({
        let reader = reader.clone();
        async move { reader.list_values().await }
    });
    held.fetched().await;

    // The master changes behind the LiveTables' backs; the event says so.
    let old_price = common::int_field(&before[ROW], "price").unwrap();
    master
        .table
        .patch_value(&ROW.to_string(), &price(old_price + 1))
        .await
        .unwrap();
    let after = master_rows(&master.table, page(1)).await;
    let handled = status.current().events;
    assert_eq!(source.push(LiveEvent::updated(ROW)), 1, "{what}");
    event_processed(&mut status, handled).await;

    held.release(1);
    let got = slow.await.unwrap().unwrap();
    assert_rows(&got, &before, &format!("{what}: the slow read"));
    let slot = reader.page_cache_key(page(1));
    assert_slot_empty_or(&*cache, &slot, &after, what).await;
    assert_rows(
        &reader.list_values().await.unwrap(),
        &after,
        &format!("{what}: a read after the event, same table"),
    );
    assert_rows(
        &paged(&other, page(1)).list_values().await.unwrap(),
        &after,
        &format!("{what}: a read after the event, other table"),
    );

    master
        .table
        .patch_value(&ROW.to_string(), &price(old_price))
        .await
        .unwrap();
}

/// A read issued after the write's acknowledgement must not join the older
/// read still in flight for the same slot: it would get the old rows.
/// Checked with a healthy cache and with one whose lookups fail (every read
/// is then a miss, and the flights still keep apart).
#[tokio::test]
async fn a_read_issued_after_an_acknowledged_write_does_not_join_an_older_flight() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for lookup in [Fault::Off, Fault::Always] {
            for writer in [Writer::SameTable, Writer::OtherTable] {
                for TestCache {
                    name,
                    cache,
                    dir: _dir,
                } in common::storing_caches()
                {
                    let what = format!("{} / {name} / lookup {lookup:?} / {writer:?}", master.kind);
                    let faulty = FaultyCache::around(cache);
                    faulty.get.set(lookup);
                    let cache: Arc<dyn Cache> = faulty.clone();
                    let (wrapped, probe) = Instrumented::wrap(master.table.clone());
                    let reader = paged(&common::live(wrapped, KEY, cache.clone()), page(1));
                    let other = common::live(master.table.clone(), KEY, cache.clone());
                    let before = master_rows(&master.table, page(1)).await;

                    let mut held = probe.hold_reads(1);
                    let slow = tokio::spawn({
                        let reader = reader.clone();
                        async move { reader.list_values().await }
                    });
                    held.fetched().await;
                    let old_price = common::int_field(&before[ROW], "price").unwrap();
                    let through = match writer {
                        Writer::SameTable => &reader,
                        Writer::OtherTable => &other,
                    };
                    through
                        .patch_value(&ROW.to_string(), &price(old_price + 1))
                        .await
                        .unwrap();
                    let after = master_rows(&master.table, page(1)).await;

                    // Issued after the acknowledgement, while the old read is
                    // still held: it must read the master again.
                    let fresh = tokio::time::timeout(PATIENCE, reader.list_values())
                        .await
                        .unwrap_or_else(|_| panic!("{what}: the fresh read joined the held one"))
                        .unwrap();
                    assert_rows(&fresh, &after, &format!("{what}: the fresh read"));
                    assert_eq!(probe.reads(), 2, "{what}");

                    held.release(1);
                    assert_rows(&slow.await.unwrap().unwrap(), &before, &what);
                    assert_slot_empty_or(
                        &**faulty.inner(),
                        &reader.page_cache_key(page(1)),
                        &after,
                        &what,
                    )
                    .await;
                    assert_rows(&reader.list_values().await.unwrap(), &after, &what);

                    master
                        .table
                        .patch_value(&ROW.to_string(), &price(old_price))
                        .await
                        .unwrap();
                }
            }
        }
    }
}

// ── 2. single flight ──────────────────────────────────────────────────────

/// One slot of each kind a read can fill.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Page,
    Id,
    Count,
}

impl Slot {
    const ALL: [Slot; 3] = [Slot::Page, Slot::Id, Slot::Count];

    async fn read(self, live: &LiveTable) -> vantage_core::Result<String> {
        Ok(match self {
            Slot::Page => format!("{:?}", paged(live, page(2)).list_values().await?),
            Slot::Id => format!("{:?}", live.get_value(&ROW.to_string()).await?),
            Slot::Count => format!("{:?}", live.get_count().await?),
        })
    }

    async fn on_master(self, master: &AnyTable) -> String {
        match self {
            Slot::Page => format!("{:?}", master_rows(master, page(2)).await),
            Slot::Id => format!("{:?}", master.get_value(&ROW.to_string()).await.unwrap()),
            Slot::Count => format!("{:?}", master.get_count().await.unwrap()),
        }
    }

    fn key(self, live: &LiveTable) -> String {
        match self {
            Slot::Page => live.page_cache_key(page(2)),
            Slot::Id => live.id_cache_key(ROW),
            Slot::Count => live.count_cache_key(),
        }
    }
}

/// Start `n` reads of `slot` and wait until every one of them has started
/// or joined the master read (which `held` keeps out until released).
async fn start_waiters(
    n: usize,
    slot: Slot,
    live: &LiveTable,
    faulty: &FaultyCache,
    lookups_before: usize,
) -> Vec<tokio::task::JoinHandle<vantage_core::Result<String>>> {
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let live = live.clone();
            tokio::spawn(async move { slot.read(&live).await })
        })
        .collect();
    // Each read's lookup returns right before it joins or starts the flight
    // (no await in between, and this runtime has one thread): once all have
    // looked, all are waiting on the one flight.
    faulty.lookups_returned(lookups_before + n).await;
    waiters
}

#[tokio::test]
async fn sixty_four_concurrent_cold_reads_of_one_slot_make_exactly_one_master_read() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for TestCache {
            name,
            cache,
            dir: _dir,
        } in common::storing_caches()
        {
            for slot in Slot::ALL {
                let what = format!("{} / {name} / {slot:?}", master.kind);
                let faulty = FaultyCache::around(cache.clone());
                let (wrapped, probe) = Instrumented::wrap(master.table.clone());
                let key = format!("{KEY}-{slot:?}");
                let live = common::live(wrapped, key, faulty.clone());
                let expected = slot.on_master(&master.table).await;

                let mut held = probe.hold_reads(1);
                let waiters = start_waiters(64, slot, &live, &faulty, 0).await;
                held.fetched().await;
                assert_eq!(probe.reads(), 1, "{what}: one read for 64 waiters");
                held.release(1);
                for waiter in waiters {
                    assert_eq!(waiter.await.unwrap().unwrap(), expected, "{what}");
                }
                assert_eq!(probe.reads(), 1, "{what}");
                // The one read filled the slot: the next read is a hit.
                assert!(
                    cache.get(&slot.key(&live)).await.unwrap().is_some(),
                    "{what}"
                );
                assert_eq!(slot.read(&live).await.unwrap(), expected, "{what}");
                assert_eq!(probe.reads(), 1, "{what}: a hit");
            }
        }
    }
}

#[tokio::test]
async fn an_error_reaches_every_waiter_and_is_not_cached() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for TestCache {
        name,
        cache,
        dir: _dir,
    } in common::storing_caches()
    {
        for slot in Slot::ALL {
            let what = format!("{name} / {slot:?}");
            let faulty = FaultyCache::around(cache.clone());
            let (wrapped, probe) = Instrumented::wrap(master.table.clone());
            let live = common::live(wrapped, format!("{KEY}-{slot:?}"), faulty.clone());
            probe.set_down(true);

            let mut held = probe.hold_reads(1);
            let waiters = start_waiters(64, slot, &live, &faulty, 0).await;
            held.fetched().await;
            held.release(1);
            for waiter in waiters {
                let err = waiter.await.unwrap().expect_err(&what);
                assert!(err.to_string().contains(DOWN), "{what}: {err}");
            }
            assert_eq!(probe.reads(), 1, "{what}: one read, one error for all");
            assert!(
                cache.get(&slot.key(&live)).await.unwrap().is_none(),
                "{what}: the error is not cached"
            );

            // The next read asks the master again.
            probe.set_down(false);
            assert_eq!(
                slot.read(&live).await.unwrap(),
                slot.on_master(&master.table).await,
                "{what}"
            );
            assert_eq!(probe.reads(), 2, "{what}");
        }
    }
}

#[tokio::test]
async fn a_waiter_that_gives_up_does_not_cancel_the_read_for_the_others() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for TestCache {
        name,
        cache,
        dir: _dir,
    } in common::storing_caches()
    {
        let faulty = FaultyCache::around(cache.clone());
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, KEY, faulty.clone());
        let expected = Slot::Page.on_master(&master.table).await;
        let key = Slot::Page.key(&live);

        // The first waiter starts the read and gives up; the second joined it.
        let mut held = probe.hold_reads(1);
        let first = start_waiters(1, Slot::Page, &live, &faulty, 0).await;
        held.fetched().await;
        let second = start_waiters(1, Slot::Page, &live, &faulty, 1).await;
        for waiter in first {
            waiter.abort();
            assert!(waiter.await.unwrap_err().is_cancelled(), "{name}");
        }
        held.release(1);
        for waiter in second {
            assert_eq!(waiter.await.unwrap().unwrap(), expected, "{name}");
        }
        assert_eq!(probe.reads(), 1, "{name}");

        // Every waiter gives up: the read still finishes and fills the slot.
        live.cache()
            .invalidate_prefix(vantage_live::cache::SlotKeys::new(KEY).prefix())
            .await
            .unwrap();
        let mut held = probe.hold_reads(1);
        let only = start_waiters(1, Slot::Page, &live, &faulty, faulty.lookups()).await;
        held.fetched().await;
        for waiter in only {
            waiter.abort();
            assert!(waiter.await.unwrap_err().is_cancelled(), "{name}");
        }
        held.release(1);
        eventually(
            &format!("{name}: the abandoned read fills the slot"),
            || {
                let cache = cache.clone();
                let key = key.clone();
                async move { cache.get(&key).await.unwrap().is_some() }
            },
        )
        .await;
        assert_eq!(probe.reads(), 2, "{name}");
        assert_eq!(Slot::Page.read(&live).await.unwrap(), expected, "{name}");
        assert_eq!(probe.reads(), 2, "{name}: a hit");
    }
}

// ── 3. master outage ──────────────────────────────────────────────────────

#[tokio::test]
async fn warm_slots_keep_serving_while_the_master_is_down_and_cold_reads_fail_promptly() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for TestCache {
            name,
            cache,
            dir: _dir,
        } in common::storing_caches()
        {
            let what = format!("{} / {name}", master.kind);
            let (wrapped, probe) = Instrumented::wrap(master.table.clone());
            let live = common::live(wrapped, KEY, cache.clone());
            let warm: Vec<String> = {
                let mut out = Vec::new();
                for slot in Slot::ALL {
                    out.push(slot.read(&live).await.unwrap());
                }
                out
            };

            probe.set_down(true);
            for (slot, before) in Slot::ALL.into_iter().zip(&warm) {
                assert_eq!(
                    &slot.read(&live).await.unwrap(),
                    before,
                    "{what}: warm {slot:?}"
                );
            }
            // Cold slots: another page, another id, the unpaginated list.
            let cold = async {
                let page3 = paged(&live, page(3)).list_values().await;
                let id = live.get_value(&"p11_sourdough".to_string()).await;
                let all = live.list_values().await;
                (page3.map(drop), id.map(drop), all.map(drop))
            };
            let (page3, id, all) = tokio::time::timeout(Duration::from_secs(5), cold)
                .await
                .unwrap_or_else(|_| panic!("{what}: a cold read hung"));
            for (cold, result) in [("page 3", page3), ("id", id), ("list", all)] {
                let err = result.expect_err(&what);
                assert!(err.to_string().contains(DOWN), "{what}: cold {cold}: {err}");
            }
            // A write fails too, and leaves the warm slots serving.
            assert!(live.patch_value(&ROW.to_string(), &price(1)).await.is_err());
            for (slot, before) in Slot::ALL.into_iter().zip(&warm) {
                assert_eq!(
                    &slot.read(&live).await.unwrap(),
                    before,
                    "{what}: warm {slot:?}"
                );
            }

            // Back up: cold reads work, and were never cached as errors.
            probe.set_down(false);
            assert_rows(
                &paged(&live, page(3)).list_values().await.unwrap(),
                &master_rows(&master.table, page(3)).await,
                &what,
            );
        }
    }
}

// ── 4. cache faults ───────────────────────────────────────────────────────

/// A LiveTable over `master` (instrumented) and a faulty wrapper around a
/// fresh cache of the named kind.
struct Faulty {
    live: LiveTable,
    faulty: Arc<FaultyCache>,
    probe: Arc<common::Probe>,
    _dir: Option<tempfile::TempDir>,
}

fn faulty_tables(master: &Master) -> Vec<(&'static str, Faulty)> {
    common::storing_caches()
        .into_iter()
        .map(|TestCache { name, cache, dir }| {
            let faulty = FaultyCache::around(cache);
            let (wrapped, probe) = Instrumented::wrap(master.table.clone());
            let live = common::live(wrapped, KEY, faulty.clone());
            (
                name,
                Faulty {
                    live,
                    faulty,
                    probe,
                    _dir: dir,
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn a_failing_get_is_a_miss() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for (name, t) in faulty_tables(&master) {
        for slot in Slot::ALL {
            slot.read(&t.live).await.unwrap(); // warm
        }
        t.faulty.get.set(Fault::Always);
        let reads = t.probe.reads();
        for slot in Slot::ALL {
            assert_eq!(
                slot.read(&t.live).await.unwrap(),
                slot.on_master(&master.table).await,
                "{name}: {slot:?}"
            );
        }
        assert_eq!(t.probe.reads(), reads + 3, "{name}: every read was a miss");
        t.faulty.get.set(Fault::Off);
        for slot in Slot::ALL {
            slot.read(&t.live).await.unwrap();
        }
        assert_eq!(t.probe.reads(), reads + 3, "{name}: hits again");
    }
}

#[tokio::test]
async fn a_wrong_shaped_slot_is_a_miss() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for (name, t) in faulty_tables(&master) {
        // Junk is a slot of another kind.
        t.faulty.get_junk.set(Fault::Always);
        for slot in Slot::ALL {
            for _ in 0..2 {
                assert_eq!(
                    slot.read(&t.live).await.unwrap(),
                    slot.on_master(&master.table).await,
                    "{name}: {slot:?}"
                );
            }
        }
        assert_eq!(t.probe.reads(), 6, "{name}: every read was a miss");
    }
}

#[tokio::test]
async fn a_failing_put_still_returns_the_masters_rows() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for (name, t) in faulty_tables(&master) {
        t.faulty.put.set(Fault::Always);
        for slot in Slot::ALL {
            for _ in 0..2 {
                assert_eq!(
                    slot.read(&t.live).await.unwrap(),
                    slot.on_master(&master.table).await,
                    "{name}: {slot:?}"
                );
            }
            assert!(t
                .faulty
                .inner()
                .get(&slot.key(&t.live))
                .await
                .unwrap()
                .is_none());
        }
        assert_eq!(t.probe.reads(), 6, "{name}: nothing was stored");
    }
}

#[tokio::test]
async fn failing_lookups_keep_single_flight_and_the_fill_replaces_the_slot() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for (name, t) in faulty_tables(&master) {
        t.faulty.get.set(Fault::Always);
        let expected = Slot::Page.on_master(&master.table).await;
        let mut held = t.probe.hold_reads(1);
        let waiters = start_waiters(16, Slot::Page, &t.live, &t.faulty, 0).await;
        held.fetched().await;
        held.release(1);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().unwrap(), expected, "{name}");
        }
        assert_eq!(t.probe.reads(), 1, "{name}: still one master read");
        assert!(
            t.faulty
                .inner()
                .get(&Slot::Page.key(&t.live))
                .await
                .unwrap()
                .is_some(),
            "{name}: a lookup that failed is a miss like any other: its fill lands"
        );
    }
}

#[tokio::test]
async fn a_failed_invalidation_makes_every_sharer_bypass_the_cache_until_one_succeeds() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for TestCache {
            name,
            cache,
            dir: _dir,
        } in common::storing_caches()
        {
            let what = format!("{} / {name}", master.kind);
            let faulty = FaultyCache::around(cache);
            let writer = common::live(master.table.clone(), KEY, faulty.clone());
            let (wrapped, probe) = Instrumented::wrap(master.table.clone());
            let reader = common::live(wrapped, KEY, faulty.clone());
            let before = master_rows(&master.table, None).await;
            assert_rows(&writer.list_values().await.unwrap(), &before, &what);
            assert_rows(&reader.list_values().await.unwrap(), &before, &what);
            assert_eq!(probe.reads(), 0, "{what}: the reader hit the writer's fill");

            // The write lands; dropping the slots fails.
            faulty.invalidate.set(Fault::Always);
            writer
                .insert_value(&"p20_bagel".to_string(), &product("Bagel", 120))
                .await
                .expect("the write itself succeeded");
            let after = master_rows(&master.table, None).await;
            assert_eq!(after.len(), before.len() + 1);
            // The old slot is still in the file (memory stores drop it at
            // once: the cache_key's epoch moved), and no sharer serves it.
            if name == "RedbCache (disk only)" {
                assert!(faulty
                    .inner()
                    .get(&reader.page_cache_key(None))
                    .await
                    .unwrap()
                    .is_some());
            }
            for (table, who) in [(&writer, "writer"), (&reader, "reader")] {
                assert_rows(
                    &table.list_values().await.unwrap(),
                    &after,
                    &format!("{what}: {who} while invalidation fails"),
                );
            }

            // Once an invalidation succeeds, the cache serves again.
            faulty.invalidate.set(Fault::Off);
            for (table, who) in [(&writer, "writer"), (&reader, "reader")] {
                assert_rows(
                    &table.list_values().await.unwrap(),
                    &after,
                    &format!("{what}: {who} after recovery"),
                );
            }
            let reads = probe.reads();
            assert_rows(&reader.list_values().await.unwrap(), &after, &what);
            assert_eq!(probe.reads(), reads, "{what}: a hit after recovery");

            master.table.delete(&"p20_bagel".to_string()).await.unwrap();
        }
    }
}

/// An invalidation that started before a write and returns after that
/// write's own invalidation failed must not clear the failure: the slot it
/// dropped may have been refilled with pre-write rows since.
#[tokio::test]
async fn an_older_invalidation_returning_late_does_not_clear_a_newer_failure() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for TestCache {
        name,
        cache,
        dir: _dir,
    } in common::storing_caches()
    {
        let faulty = FaultyCache::around(cache);
        let source = ManualLiveStream::new();
        let live = common::live(master.table.clone(), KEY, faulty.clone())
            .with_live_stream(Arc::new(source.clone()));
        let mut status = live.live_stream_status().unwrap();
        live.start_live_stream();
        tokio::time::timeout(PATIENCE, status.wait_for(|s| s.subscribed))
            .await
            .unwrap();
        let before = master_rows(&master.table, None).await;

        // An event's invalidation drops the slots and is held before it
        // returns.
        let mut held = faulty.hold_invalidations(1);
        let handled = status.current().events;
        assert_eq!(source.push(LiveEvent::Changed), 1);
        held.done().await;
        // A read refills the slot with the current (pre-write) rows.
        assert_rows(&live.list_values().await.unwrap(), &before, name);
        // A write lands and its invalidation fails.
        faulty.invalidate.set(Fault::Always);
        live.insert_value(&"p20_bagel".to_string(), &product("Bagel", 120))
            .await
            .unwrap();
        faulty.invalidate.set(Fault::Off);
        let after = master_rows(&master.table, None).await;
        // The event's (older) invalidation now returns Ok.
        held.release(1);
        event_processed(&mut status, handled).await;

        assert_rows(
            &live.list_values().await.unwrap(),
            &after,
            &format!("{name}: a read after the write's acknowledgement"),
        );
        master.table.delete(&"p20_bagel".to_string()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_in_the_redb_cache_is_a_miss_not_an_error() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let dir = tempfile::tempdir().unwrap();
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, KEY, Arc::new(vantage_live::NoCache));
        let keys: Vec<String> = Slot::ALL.iter().map(|s| s.key(&live)).collect();

        // Plant undecodable bytes in every slot, with redb itself.
        {
            let db = redb::Database::create(dir.path().join(vantage_live::cache::REDB_FILE_NAME))
                .unwrap();
            let txn = db.begin_write().unwrap();
            for (i, key) in keys.iter().enumerate() {
                let (namespace, slot) = vantage_live_layers::cache::split_key(key);
                let name = format!("__vlive__{namespace}");
                let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new(&name);
                let junk: [&[u8]; 3] = [b"\xff\xff not cbor", b"\x01", b""];
                let junk = junk[i];
                txn.open_table(def).unwrap().insert(slot, junk).unwrap();
            }
            txn.commit().unwrap();
        }
        let cache: Arc<dyn Cache> = Arc::new(RedbCache::open(dir.path()).unwrap());
        for key in &keys {
            assert!(
                cache.get(key).await.is_err(),
                "{what}: {key} really is junk"
            );
        }
        let live = common::live(live.master().clone(), KEY, cache.clone());
        for slot in Slot::ALL {
            assert_eq!(
                slot.read(&live).await.unwrap(),
                slot.on_master(&master.table).await,
                "{what}: {slot:?}"
            );
        }
        assert_eq!(probe.reads(), 3, "{what}: three misses");
        for key in &keys {
            assert!(cache.get(key).await.unwrap().is_some(), "{what}: repaired");
        }
        for slot in Slot::ALL {
            slot.read(&live).await.unwrap();
        }
        assert_eq!(probe.reads(), 3, "{what}: hits after the repair");
    }
}

// ── 5. one backend, one state ─────────────────────────────────────────────

/// A `RedbCache` and a clone of it with a memory front of its own, each under
/// a LiveTable with the same cache_key: a page filled through the clone
/// (into its front) is never served by the clone after a write through the
/// original.
#[tokio::test]
async fn clones_of_a_redb_cache_with_fronts_of_their_own_never_serve_each_other_stale_pages() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let dir = tempfile::tempdir().unwrap();
        let base = RedbCache::open(dir.path()).unwrap();
        let clone = base.clone().with_memory_front(1 << 20);
        let writer = common::live(master.table.clone(), KEY, Arc::new(base));
        let reader = paged(
            &common::live(master.table.clone(), KEY, Arc::new(clone)),
            page(1),
        );

        let before = master_rows(&master.table, page(1)).await;
        assert_rows(&reader.list_values().await.unwrap(), &before, what);
        let old = common::int_field(&before[ROW], "price").unwrap();
        writer
            .patch_value(&ROW.to_string(), &price(old + 1))
            .await
            .unwrap();
        let after = master_rows(&master.table, page(1)).await;
        assert_rows(
            &reader.list_values().await.unwrap(),
            &after,
            &format!("{what}: the clone after a write through the original"),
        );
        master
            .table
            .patch_value(&ROW.to_string(), &price(old))
            .await
            .unwrap();
    }
}

/// Two stacks over clones of one backend behind separate `Arc`s: when one
/// stack's invalidation fails (the write itself succeeds), the other stops
/// serving the cache_key's slots too, until an invalidation succeeds.
#[tokio::test]
async fn a_failed_invalidation_through_one_arc_makes_stacks_on_another_arc_bypass_the_cache() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        for TestCache {
            name,
            cache,
            dir: _dir,
        } in common::storing_caches()
        {
            let what = format!("{} / {name}", master.kind);
            // Two `Arc`s: two wrappers, each around the same backend.
            let a = FaultyCache::around(cache.clone());
            let b = FaultyCache::around(cache.clone());
            let writer = common::live(master.table.clone(), KEY, a.clone());
            let reader = common::live(master.table.clone(), KEY, b.clone());
            let before = master_rows(&master.table, None).await;
            assert_rows(&reader.list_values().await.unwrap(), &before, &what);

            a.invalidate.set(Fault::Always);
            writer
                .insert_value(&"p21_pretzel_bun".to_string(), &product("Bun", 90))
                .await
                .expect("the write itself succeeds");
            let after = master_rows(&master.table, None).await;
            assert_rows(
                &reader.list_values().await.unwrap(),
                &after,
                &format!("{what}: the other Arc's stack after a failed invalidation"),
            );
            a.invalidate.set(Fault::Off);
            assert_rows(&reader.list_values().await.unwrap(), &after, &what);
            master
                .table
                .delete(&"p21_pretzel_bun".to_string())
                .await
                .unwrap();
        }
    }
}

/// LiveTables built separately (not clones of one another) over clones of
/// one backend behind separate `Arc`s: 64 concurrent cold reads of one slot
/// spread over them make one master read.
#[tokio::test]
async fn separate_live_tables_over_one_backend_share_single_flight() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    for TestCache {
        name,
        cache,
        dir: _dir,
    } in common::storing_caches()
    {
        // Four `Arc`s: four wrappers, each around the same backend.
        let wrappers: Vec<Arc<FaultyCache>> =
            (0..4).map(|_| FaultyCache::around(cache.clone())).collect();
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let tables: Vec<LiveTable> = wrappers
            .iter()
            .map(|w| common::live(wrapped.clone(), KEY, w.clone()))
            .collect();
        let expected = Slot::Page.on_master(&master.table).await;
        let mut held = probe.hold_reads(1);
        let waiters: Vec<_> = (0..64)
            .map(|i| {
                let live = tables[i % 4].clone();
                tokio::spawn(async move { Slot::Page.read(&live).await })
            })
            .collect();
        held.fetched().await;
        // Every read has looked (and missed: the one master read is held),
        // so each has joined a flight or started one.
        eventually(&format!("{name}: 64 lookups"), || {
            let looked: usize = wrappers.iter().map(|w| w.lookups()).sum();
            async move { looked >= 64 }
        })
        .await;
        held.release(1);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().unwrap(), expected, "{name}");
        }
        assert_eq!(
            probe.reads(),
            1,
            "{name}: one master read for all four tables"
        );
    }
}

/// The master's first read panics; later ones answer.
#[derive(Default)]
struct PanicOnce {
    panicked: std::sync::atomic::AtomicBool,
}

impl common::hooked::Hooks for PanicOnce {
    fn read<'a, T: Send + 'a>(
        &'a self,
        call: common::hooked::Call<'a, T>,
    ) -> common::hooked::Call<'a, T> {
        if !self
            .panicked
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("the master read blew up");
        }
        call
    }
}

/// 2b. A master read that panics fails its readers, and leaves no flight
/// behind: the next read of the slot reads the master again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicked_master_read_is_not_joined_later() {
    let master = common::redb_master("product").await;
    let table = common::hooked::Hooked::wrap(master.table.clone(), Arc::new(PanicOnce::default()));
    let live = common::live(table, "products", Arc::new(vantage_live::MemCache::new()));
    let error = live.list_values().await.expect_err("the read panicked");
    assert!(error.to_string().contains("without an answer"), "{error}");
    let rows = tokio::time::timeout(PATIENCE, live.list_values())
        .await
        .expect("the next read answers")
        .expect("from the master");
    assert_eq!(rows, master_rows(&master.table, None).await);
}

/// The same tests, over a stack with tower middleware between the cache and
/// the master (see `tests/common/stacks.rs`).
#[test]
fn the_suite_passes_over_a_custom_stack() {
    common::stacks::rerun_over_custom_stack("the_suite_passes_over_a_custom_stack");
}
