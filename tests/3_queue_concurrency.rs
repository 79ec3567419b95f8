//! The write queue under concurrency, over real masters: own replies, FIFO
//! order at the master, detached completion, panics, back-pressure, reads
//! passing writes, and a LiveTable dropped with writes still queued.
//!
//! The order writes reach the master is read from a thin `TableLike` wrapper
//! around the real table (`common::recording`); the rows live in the real
//! table. No test sleeps to let tasks run: the wrapper holds writes at a gate
//! the test opens, and where a test must see that nothing more can happen it
//! pauses the clock (a timer then fires only once every task is idle).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::{field, int_field, product, Master, Recording, PATIENCE};
use futures_util::future::join_all;
use futures_util::poll;
use vantage_core::Result;
use vantage_dataset::prelude::{InsertableValueSet, ReadableValueSet, WritableValueSet};
use vantage_live::{LiveTable, MemCache, WritePanicked};
use vantage_table::any::AnyTable;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

fn live(table: AnyTable) -> LiveTable {
    common::live(table, "products", Arc::new(MemCache::new()))
}

type Write = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

fn insert(live: &LiveTable, id: &str, name: &str) -> Write {
    let (live, id, record) = (live.clone(), id.to_string(), product(name, 100));
    Box::pin(async move { live.insert_value(&id, &record).await.map(drop) })
}

fn patch_price(live: &LiveTable, id: &str, price: i64) -> Write {
    let (live, id) = (live.clone(), id.to_string());
    let partial: Record<ciborium::Value> =
        [("price".to_string(), ciborium::Value::Integer(price.into()))]
            .into_iter()
            .collect();
    Box::pin(async move { live.patch_value(&id, &partial).await.map(drop) })
}

fn delete(live: &LiveTable, id: &str) -> Write {
    let (live, id) = (live.clone(), id.to_string());
    Box::pin(async move { live.delete(&id).await })
}

/// Start each write in turn: poll it once, which puts it in the queue (there
/// is room). Polled without tokio's cooperative budget, so no poll is turned
/// away for having used up the task's share.
async fn start_in_order(writes: &mut [Write]) {
    tokio::task::unconstrained(async {
        for write in writes.iter_mut() {
            assert!(
                poll!(write.as_mut()).is_pending(),
                "a write cannot finish on its first poll"
            );
        }
    })
    .await;
}

async fn wait<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} never finished"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_inserts_each_get_their_own_reply() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let live = live(master.table.clone());
        let callers: Vec<_> = (0..100)
            .map(|i| {
                let live = live.clone();
                tokio::spawn(async move {
                    let id = format!("c{i:03}");
                    let name = format!("Concurrent {i}");
                    let stored = live.insert_value(&id, &product(&name, i)).await.unwrap();
                    assert_eq!(field(&stored, "name"), name, "{id}'s own reply");
                    assert_eq!(int_field(&stored, "price"), Some(i), "{id}'s own reply");
                })
            })
            .collect();
        for caller in callers {
            wait("an insert", caller).await.unwrap();
        }
        let rows = master.table.list_values().await.unwrap();
        for i in 0..100 {
            let row = &rows[&format!("c{i:03}")];
            assert_eq!(field(row, "name"), format!("Concurrent {i}"), "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_insert_return_ids_each_get_their_own_id() {
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let live = live(master.table.clone());
        let callers: Vec<_> = (0..100)
            .map(|i| {
                let live = live.clone();
                tokio::spawn(async move {
                    let name = format!("Generated {i}");
                    let id = live
                        .insert_return_id_value(&product(&name, i))
                        .await
                        .unwrap();
                    (id, name)
                })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for caller in callers {
            let (id, name) = wait("an insert", caller).await.unwrap();
            let row = master.table.get_value(&id).await.unwrap().expect(kind);
            assert_eq!(
                field(&row, "name"),
                name,
                "{kind}: {id} holds its own caller's row"
            );
            assert!(ids.insert(id), "{kind}: ids are distinct");
        }
    }
}

#[tokio::test]
async fn writes_reach_the_master_in_the_order_they_were_started() {
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let (table, recorder) = Recording::around(master.table.clone()).build();
        let live = live(table);
        // Three clones share one queue.
        let clones = [live.clone(), live.clone(), live.clone()];

        // 40 inserts, each followed by a patch of the same row (which fails
        // if it overtakes its insert), then 20 deletes: 100 writes.
        let mut writes = Vec::new();
        let mut expected = Vec::new();
        for i in 0..40 {
            let id = format!("o{i:02}");
            writes.push(insert(&clones[i % 3], &id, &format!("Ordered {i}")));
            expected.push(format!("insert {id}"));
            writes.push(patch_price(&clones[(i + 1) % 3], &id, i as i64));
            expected.push(format!("patch {id}"));
        }
        for i in (0..40).step_by(2) {
            let id = format!("o{i:02}");
            writes.push(delete(&clones[i % 3], &id));
            expected.push(format!("delete {id}"));
        }
        start_in_order(&mut writes).await;
        for result in wait("the writes", join_all(writes)).await {
            result.unwrap();
        }

        assert_eq!(recorder.applied(), expected, "{kind}: FIFO at the master");
        assert_eq!(recorder.max_in_flight(), 1, "{kind}: one write at a time");
        let rows = master.table.list_values().await.unwrap();
        for i in 0..40 {
            let id = format!("o{i:02}");
            match rows.get(&id) {
                Some(row) => {
                    assert!(i % 2 == 1, "{kind}: {id} was deleted");
                    assert_eq!(int_field(row, "price"), Some(i as i64), "{kind}: {id}");
                }
                None => assert!(i % 2 == 0, "{kind}: {id} is on the master"),
            }
        }
    }
}

#[tokio::test]
async fn a_write_whose_caller_gave_up_is_still_applied() {
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let (table, mut recorder) = Recording::around(master.table.clone()).gated().build();
        let live = live(table);

        // A caller that drops its future right after the write entered the
        // queue (before the queue's worker even saw it).
        {
            let mut gone = insert(&live, "g1_gone", "Gone");
            start_in_order(std::slice::from_mut(&mut gone)).await;
        }
        // A caller that times out: the gate is shut, so it always does.
        let late = tokio::time::timeout(
            Duration::from_millis(10),
            live.insert_value(&"g2_late".to_string(), &product("Late", 1)),
        )
        .await;
        assert!(late.is_err(), "{kind}: timed out");
        assert_eq!(recorder.started().await, "insert g1_gone", "{kind}");

        recorder.release(3);
        let after = "g3_after".to_string();
        wait(
            "a later write",
            live.insert_value(&after, &product("After", 1)),
        )
        .await
        .unwrap();

        // FIFO: the later write's reply means the abandoned ones are done.
        assert_eq!(
            recorder.applied(),
            ["insert g1_gone", "insert g2_late", "insert g3_after"],
            "{kind}"
        );
        for id in ["g1_gone", "g2_late", "g3_after"] {
            let row = master.table.get_value(&id.to_string()).await.unwrap();
            assert!(row.is_some(), "{kind}: {id} is on the master");
        }
    }
}

#[tokio::test]
async fn dropping_every_live_table_applies_accepted_writes_then_ends_the_worker() {
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let (table, mut recorder) = Recording::around(master.table.clone()).gated().build();
        let live = live(table);
        let clone = live.clone();

        let mut writes = vec![
            insert(&live, "d1", "First"),
            insert(&clone, "d2", "Second"),
            patch_price(&live, "d1", 7),
        ];
        start_in_order(&mut writes).await;
        // Every caller gives up, and every LiveTable is dropped.
        drop(writes);
        drop((live, clone));

        recorder.release(3);
        // The wrapper's last clone goes when the worker and the last write's
        // task have ended.
        recorder.dropped().await;
        assert_eq!(
            recorder.applied(),
            ["insert d1", "insert d2", "patch d1"],
            "{kind}"
        );
        let rows = master.table.list_values().await.unwrap();
        assert_eq!(int_field(&rows["d1"], "price"), Some(7), "{kind}");
        assert_eq!(field(&rows["d2"], "name"), "Second", "{kind}");
    }
}

#[tokio::test]
async fn a_panicking_write_does_not_stop_the_queue() {
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let (table, recorder) = Recording::around(master.table.clone())
            .panic_on_insert("x2_boom")
            .build();
        let live = live(table);
        live.list_values().await.unwrap();

        let mut writes = vec![
            insert(&live, "x1", "Before"),
            insert(&live, "x2_boom", "Boom"),
            insert(&live, "x3", "After"),
        ];
        start_in_order(&mut writes).await;
        let results = wait("the writes", join_all(writes)).await;

        assert!(results[0].is_ok(), "{kind}");
        let error = results[1].as_ref().unwrap_err();
        assert!(error.to_string().contains("panicked"), "{kind}: {error}");
        let panicked = std::error::Error::source(error)
            .and_then(|s| s.downcast_ref::<WritePanicked>())
            .expect("the source is WritePanicked");
        assert!(panicked.message().contains("x2_boom"), "{kind}: {panicked}");
        assert!(results[2].is_ok(), "{kind}");

        assert_eq!(recorder.applied(), ["insert x1", "insert x3"], "{kind}");
        let rows = master.table.list_values().await.unwrap();
        assert!(rows.contains_key("x1") && rows.contains_key("x3"), "{kind}");
        assert!(!rows.contains_key("x2_boom"), "{kind}");
        // Reads and later writes still work.
        assert!(
            live.list_values().await.unwrap().contains_key("x3"),
            "{kind}"
        );
        live.delete(&"x1".to_string()).await.unwrap();
    }
}

#[tokio::test]
async fn a_panicking_write_leaves_no_stale_slot_behind() {
    // A write that panics may have reached the master before panicking; the
    // cache cannot know, so it must not go on serving the pre-write slot.
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let (table, _recorder) = Recording::around(master.table.clone())
            .panic_on_insert("x9_boom")
            .build();
        let live = live(table);
        let before = live.list_values().await.unwrap();
        assert!(live
            .cache()
            .get(&live.page_cache_key(None))
            .await
            .unwrap()
            .is_some());
        let error = wait("the write", insert(&live, "x9_boom", "Boom"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("panicked"), "{kind}: {error}");
        // Change the master behind the cache's back, as a partly applied
        // write would have.
        master
            .table
            .insert_value(&"x9_behind".to_string(), &product("Behind", 5))
            .await
            .unwrap();
        let after = live.list_values().await.unwrap();
        assert_eq!(
            after.len(),
            before.len() + 1,
            "{kind}: no stale slot served"
        );
        assert!(after.contains_key("x9_behind"), "{kind}");
    }
}

#[tokio::test]
async fn reads_never_wait_behind_queued_writes() {
    for master in common::embedded_masters("product").await {
        let kind = master.kind;
        let (table, mut recorder) = Recording::around(master.table.clone()).gated().build();
        let live = live(table).with_write_queue_bound(1);
        let before = master.table.list_values().await.unwrap();

        // One write held at the gate, more queued and waiting behind it.
        let writers: Vec<_> = (0..5)
            .map(|i| tokio::spawn(insert(&live, &format!("r{i}"), "Queued")))
            .collect();
        let first = recorder.started().await;

        let rows = wait("a read", live.list_values()).await.unwrap();
        assert_eq!(rows, before, "{kind}: the read did not wait for the writes");
        let count = wait("a count", live.get_count()).await.unwrap();
        assert_eq!(count, before.len() as i64, "{kind}");

        recorder.release(5);
        for writer in writers {
            wait("a write", writer).await.unwrap().unwrap();
        }
        assert_eq!(recorder.applied().len(), 5, "{kind}");
        assert_eq!(recorder.applied()[0], first, "{kind}");
    }
}

/// Back-pressure, exactly. The clock is paused, so the master is redb (no
/// timers of its own): a timeout then elapses only once every task is idle.
#[tokio::test(start_paused = true)]
async fn a_full_queue_applies_back_pressure() {
    let master: Master = common::redb_master("product").await;
    let (table, mut recorder) = Recording::around(master.table.clone()).gated().build();
    let live = live(table).with_write_queue_bound(1);
    let idle = Duration::from_secs(1);

    // b1 is in flight (held at the gate).
    let b1 = tokio::spawn(insert(&live, "b1", "One"));
    assert_eq!(recorder.started().await, "insert b1");
    // b2 is taken by the queue's worker, b3 takes the one slot.
    let b2 = tokio::spawn(insert(&live, "b2", "Two"));
    let b3 = tokio::spawn(insert(&live, "b3", "Three"));
    assert_eq!(
        recorder.next_start_within(idle).await,
        None,
        "one at a time"
    );

    // The queue is full: b4 waits for room, and giving up while it waits
    // withdraws it.
    let b4 = tokio::time::timeout(
        idle,
        live.insert_value(&"b4".to_string(), &product("Four", 1)),
    )
    .await;
    assert!(b4.is_err(), "b4 waited for room");
    // b5 waits too, and is not turned away.
    let b5 = tokio::spawn(insert(&live, "b5", "Five"));
    assert_eq!(recorder.next_start_within(idle).await, None);

    recorder.release(10);
    for writer in [b1, b2, b3, b5] {
        wait("a write", writer).await.unwrap().unwrap();
    }
    assert_eq!(
        recorder.applied(),
        ["insert b1", "insert b2", "insert b3", "insert b5"]
    );
    assert!(master
        .table
        .get_value(&"b4".to_string())
        .await
        .unwrap()
        .is_none());
}

/// The same tests, over a stack with tower middleware between the cache and
/// the master (see `tests/common/stacks.rs`).
#[test]
fn the_suite_passes_over_a_custom_stack() {
    common::stacks::rerun_over_custom_stack("the_suite_passes_over_a_custom_stack");
}
