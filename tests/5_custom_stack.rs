//! A LiveTable over a stack of one's own: tower's middleware between our
//! layers, without glue, over a real SQLite master.
//!
//! - a timeout's error reaches the caller as a `VantageError` that says the
//!   read timed out (and still downcasts to tower's `Elapsed`);
//! - a concurrency limit on the master back-pressures writes (visible
//!   through the stack's `poll_ready`) without losing or reordering any;
//! - builders hold settings: nothing is spawned and nothing subscribes until
//!   the first request.
//!
//! The read, write and consistency suites run over a custom stack too (see
//! `common::stacks`); this file holds what only a custom stack shows.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{product, Instrumented, Recording, PATIENCE};
use futures_util::FutureExt as _;
use tower::limit::ConcurrencyLimit;
use tower::timeout::error::Elapsed;
use tower::timeout::Timeout;
use tower::{Service, ServiceBuilder, ServiceExt};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{
    CacheLayer, CacheService, LiveTable, MemCache, Request, TableService, WriteQueue,
    WriteQueueLayer, WriteRequest,
};
use vantage_live_layers::{InvalidateOnEventLayer, ManualLiveStream};
use vantage_table::any::AnyTable;

type Custom = WriteQueue<CacheService<Timeout<ConcurrencyLimit<TableService>>>>;

/// The stack of `examples/custom_stack.rs`: the write queue, the cache, then
/// tower's timeout and concurrency limit in front of the master.
fn custom(master: AnyTable, timeout: Duration, limit: usize) -> (LiveTable<Custom>, CacheLayer) {
    let cache = CacheLayer::new(Arc::new(MemCache::new()), "products");
    let stack = ServiceBuilder::new()
        .layer(WriteQueueLayer::with_bound(4))
        .layer(cache.clone())
        .timeout(timeout)
        .concurrency_limit(limit)
        .service(TableService::new(master.clone()));
    let live = LiveTable::from_service(master, stack).with_cache_layer(&cache);
    (live, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_read_says_so_and_the_next_read_works() {
    let master = common::sqlite_master("product").await;
    let (table, probe) = Instrumented::wrap(master.table.clone());
    let (live, _cache) = custom(table, Duration::from_millis(200), 8);

    // The master answers, but the answer is held past the timeout.
    let mut held = probe.hold_reads(1);
    let error = live
        .list_values()
        .await
        .expect_err("the read must time out");
    held.fetched().await;
    let message = error.to_string();
    assert!(message.contains("timed out"), "{message}");
    let mut source = std::error::Error::source(&error);
    let mut found = false;
    while let Some(e) = source {
        found |= e.downcast_ref::<Elapsed>().is_some();
        source = e.source();
    }
    assert!(found, "tower's Elapsed is in the chain: {error:?}");

    // Nothing was cached by the abandoned read; the next one reads the
    // master and answers.
    held.release(1);
    let rows = live.list_values().await.expect("the next read works");
    assert_eq!(rows.len(), common::seed_len("product"));
    assert_eq!(live.stats().hits, 0);
}

/// Writes wait for the master's one permit: the stack reports not ready
/// while the permit is held, and every write lands, in order. The writer
/// drives the stack as tower's callers do (`ready`, then `call`) on one
/// long-lived handle: a write must not keep the readiness it reserved, or
/// the queue's worker would wait for that permit forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_back_pressures_writes_without_loss_or_reorder() {
    let master = common::sqlite_master("product").await;
    let (table, mut recorder) = Recording::around(master.table.clone()).gated().build();
    let (live, _cache) = custom(table, Duration::from_secs(60), 1);

    let ids: Vec<String> = (0..12).map(|i| format!("w{i:02}")).collect();
    let mut stack = live.stack().clone();
    let to_write = ids.clone();
    let writer = tokio::spawn(async move {
        let mut replies = Vec::new();
        for id in to_write {
            stack.ready().await.expect("ready");
            let write = WriteRequest::Insert {
                record: product(&id, 100),
                id,
            };
            replies.push(tokio::spawn(stack.call(Request::Write(write))));
        }
        replies
    });

    // One at a time, in order: each write reaches the master only after the
    // one before it finished, and while one holds the master's permit the
    // stack is not ready.
    for id in &ids {
        assert_eq!(recorder.started().await, format!("insert {id}"));
        assert!(
            live.stack().clone().ready().now_or_never().is_none(),
            "a concurrency-limited master must show through poll_ready"
        );
        recorder.release(1);
    }
    let replies = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect("the writer got through")
        .expect("no panic");
    for reply in replies {
        tokio::time::timeout(PATIENCE, reply)
            .await
            .expect("every write answers")
            .expect("no panic")
            .expect("every write succeeds");
    }
    let applied: Vec<String> = ids.iter().map(|id| format!("insert {id}")).collect();
    assert_eq!(recorder.applied(), applied, "all applied, in order");
    assert_eq!(recorder.max_in_flight(), 1);
    // Ready again once the permit is back.
    tokio::time::timeout(PATIENCE, live.stack().clone().ready())
        .await
        .expect("ready again")
        .expect("no error");

    // Nothing lost: the master holds every row.
    let rows = master.table.list_values().await.unwrap();
    for id in &ids {
        assert!(rows.contains_key(id), "{id} is in the master");
    }
    assert_eq!(rows.len(), common::seed_len("product") + ids.len());
}

/// `LiveTable`'s builders and `InvalidateOnEventLayer` hold settings: no
/// task is spawned and nothing subscribes until the first request.
#[tokio::test(flavor = "current_thread")]
async fn builders_spawn_nothing_until_first_use() {
    let master = common::redb_master("product").await;
    let runtime = tokio::runtime::Handle::current();
    let tasks = || runtime.metrics().num_alive_tasks();
    let settle = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    };
    // A redb master: no connection pool whose own tasks come and go.
    settle().await;
    let before = tasks();

    // The default stack, configured with every builder.
    let source = ManualLiveStream::new();
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()))
        .with_live_stream(Arc::new(source.clone()))
        .with_master_ipp(5)
        .with_write_queue_bound(3)
        .with_id_generator(|| "generated".to_string())
        .with_master_layer(ServiceBuilder::new().timeout(Duration::from_secs(5)));
    // A stack of one's own with the event layer in it.
    let own_source = ManualLiveStream::new();
    let cache = CacheLayer::new(Arc::new(MemCache::new()), "own");
    let own = ServiceBuilder::new()
        .layer(InvalidateOnEventLayer::new(
            Arc::new(own_source.clone()),
            cache.invalidator(),
        ))
        .layer(WriteQueueLayer::new())
        .layer(cache.clone())
        .service(TableService::new(master.table.clone()));
    let own = LiveTable::from_service(master.table.clone(), own).with_cache_layer(&cache);
    settle().await;
    assert_eq!(tasks(), before, "building spawned a task");
    assert_eq!(source.subscriber_count(), 0, "building subscribed");
    assert_eq!(own_source.subscriber_count(), 0, "building subscribed");

    // The first request starts them.
    live.list_values().await.unwrap();
    assert_eq!(
        own.list_values().await.unwrap().len(),
        common::seed_len("product")
    );
    assert_eq!(source.subscriber_count(), 1, "subscribed on first use");
    assert_eq!(own_source.subscriber_count(), 1, "subscribed on first use");
    assert!(tasks() > before);

    // The write queue's worker starts with the first write.
    let with_queue = tasks();
    live.insert_value(&"p99".to_string(), &product("Late", 1))
        .await
        .unwrap();
    assert!(tasks() > with_queue, "the queue's worker runs");
}
