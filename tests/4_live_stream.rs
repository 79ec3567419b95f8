//! Live streams keep a LiveTable's cache honest: every event drops the
//! cache_key; a lost stream is re-subscribed with backoff and drops it too;
//! the background task ends with the last LiveTable clone. The PostgreSQL
//! tests change rows with plain SQL beside the LiveTable and watch them show
//! up through LISTEN/NOTIFY; the SurrealDB tests change rows through a second
//! connection and watch them show up through `LIVE SELECT`.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::time::Instant;
use vantage_core::Result;
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{
    install_notify_trigger, Cache, CachedRows, EventStats, EventStatus, LiveEvent, LiveStream,
    LiveTable, ManualLiveStream, MemCache, PgNotifyLiveStream, RedbCache, SurrealLiveStream,
};
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

/// Wait for the task's counters to satisfy `condition`. Bounded, and in
/// virtual time under a paused clock: nothing here sleeps for real.
async fn wait(
    status: &mut EventStatus,
    what: &str,
    condition: impl FnMut(&EventStats) -> bool,
) -> EventStats {
    match tokio::time::timeout(Duration::from_secs(30), status.wait_for(condition)).await {
        Ok(Some(stats)) => stats,
        Ok(None) => panic!("{what}: the task ended first ({:?})", status.current()),
        Err(_) => panic!("{what}: not within 30 s ({:?})", status.current()),
    }
}

/// A LiveTable over `master` with a manual stream, subscribed.
async fn live_with_manual(
    master: &common::Master,
    cache: Arc<dyn Cache>,
) -> (LiveTable, ManualLiveStream, EventStatus) {
    let source = ManualLiveStream::new();
    let live = LiveTable::new(master.table.clone(), "products", cache)
        .with_live_stream(Arc::new(source.clone()));
    let mut status = live.live_stream_status().expect("a live stream is set");
    live.start_live_stream();
    wait(&mut status, "first subscription", |s| s.subscribed).await;
    assert_eq!(source.subscriber_count(), 1);
    (live, source, status)
}

fn caches() -> Vec<(&'static str, Arc<dyn Cache>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let redb = RedbCache::open(dir.path()).expect("open redb cache");
    vec![
        ("MemCache", Arc::new(MemCache::new()), None),
        ("RedbCache", Arc::new(redb), Some(dir)),
    ]
}

#[tokio::test]
async fn without_a_stream_there_is_no_task() {
    let master = common::redb_master("product").await;
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()));
    assert!(live.live_stream_status().is_none());
}

#[tokio::test]
async fn a_pushed_event_invalidates_with_mem_and_redb_caches() {
    common::init_tracing();
    for (name, cache, _dir) in caches() {
        let master = common::redb_master("product").await;
        let (live, source, mut status) = live_with_manual(&master, cache.clone()).await;

        // Fill a list slot, an id slot and the count slot.
        let list_key = live.page_cache_key(None);
        let id_key = live.id_cache_key("p01_baguette");
        let count_key = live.count_cache_key();
        assert_eq!(live.list_values().await.unwrap().len(), 12, "{name}");
        assert!(live
            .get_value(&"p01_baguette".to_string())
            .await
            .unwrap()
            .is_some());
        assert_eq!(live.get_count().await.unwrap(), 12, "{name}");
        for key in [&list_key, &id_key, &count_key] {
            assert!(
                cache.get(key).await.unwrap().is_some(),
                "{name}: {key} filled"
            );
        }

        // Change the master behind the LiveTable's back: the cache is stale.
        master
            .table
            .delete(&"p01_baguette".to_string())
            .await
            .unwrap();
        assert_eq!(
            live.list_values().await.unwrap().len(),
            12,
            "{name}: stale hit"
        );

        let before = status.current().events;
        assert_eq!(source.push(LiveEvent::deleted("p01_baguette")), 1, "{name}");
        wait(&mut status, name, |s| s.events > before).await;
        for key in [&list_key, &id_key, &count_key] {
            assert!(
                cache.get(key).await.unwrap().is_none(),
                "{name}: {key} dropped"
            );
        }
        let rows = live.list_values().await.unwrap();
        assert_eq!(rows.len(), 11, "{name}: re-read from the master");
        assert!(!rows.contains_key("p01_baguette"), "{name}");
        assert!(live
            .get_value(&"p01_baguette".to_string())
            .await
            .unwrap()
            .is_none());
        assert_eq!(live.get_count().await.unwrap(), 11, "{name}");
        assert_eq!(status.current().subscriptions, 1, "{name}: no re-subscribe");
    }
}

#[tokio::test]
async fn every_event_kind_invalidates_every_page_slot() {
    let master = common::redb_master("product").await;
    let cache: Arc<dyn Cache> = Arc::new(MemCache::new());
    let (live, source, mut status) = live_with_manual(&master, cache.clone()).await;
    let events = [
        LiveEvent::Changed,
        LiveEvent::inserted("new"),
        LiveEvent::updated("p02_brioche"),
        LiveEvent::deleted("gone"),
    ];
    for event in events {
        let mut pages = Vec::new();
        for page in 1..=3 {
            let mut view = live.clone();
            view.set_pagination(Some(Pagination::new(page, 5)));
            view.list_values().await.unwrap();
            pages.push(view.page_cache_key(Some(Pagination::new(page, 5))));
        }
        for key in &pages {
            assert!(cache.get(key).await.unwrap().is_some(), "{key} filled");
        }
        let before = status.current().events;
        assert_eq!(source.push(event.clone()), 1);
        wait(&mut status, event.kind(), |s| s.events > before).await;
        for key in &pages {
            assert!(
                cache.get(key).await.unwrap().is_none(),
                "{event}: {key} dropped"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_is_resubscribed_and_the_cache_dropped() {
    common::init_tracing();
    for (name, cache, _dir) in caches() {
        let master = common::redb_master("product").await;
        let (live, source, mut status) = live_with_manual(&master, cache.clone()).await;
        let key = live.page_cache_key(None);
        live.list_values().await.unwrap();
        assert!(cache.get(&key).await.unwrap().is_some(), "{name}: filled");

        // Lose the stream; a change happens while nobody listens.
        assert_eq!(source.disconnect(), 1, "{name}");
        master
            .table
            .delete(&"p03_cinnamon_roll".to_string())
            .await
            .unwrap();
        let stats = wait(&mut status, name, |s| s.subscriptions >= 2).await;
        assert!(stats.subscribed, "{name}");
        assert_eq!(stats.events, 0, "{name}: no event was pushed");
        assert!(
            cache.get(&key).await.unwrap().is_none(),
            "{name}: dropped on re-subscribe"
        );
        assert_eq!(
            live.list_values().await.unwrap().len(),
            11,
            "{name}: the missed change shows"
        );

        // And the new subscription delivers events.
        assert_eq!(source.subscriber_count(), 1, "{name}");
        assert_eq!(source.push(LiveEvent::Changed), 1, "{name}");
        wait(&mut status, name, |s| s.events >= 1).await;
        assert!(cache.get(&key).await.unwrap().is_none(), "{name}");
    }
}

/// A source whose every subscription ends at once, recording when it was
/// subscribed.
#[derive(Default)]
struct EndsAtOnce {
    at: Mutex<Vec<Instant>>,
}

impl LiveStream for EndsAtOnce {
    fn subscribe(&self) -> BoxStream<'static, LiveEvent> {
        self.at.lock().unwrap().push(Instant::now());
        futures_util::stream::empty().boxed()
    }
}

#[tokio::test(start_paused = true)]
async fn resubscribing_backs_off_exponentially_with_jitter_up_to_a_cap() {
    let master = common::redb_master("product").await;
    let source = Arc::new(EndsAtOnce::default());
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()))
        .with_live_stream(source.clone());
    let mut status = live.live_stream_status().unwrap();
    live.start_live_stream();

    // Two virtual minutes of a source that never stays up.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let at = source.at.lock().unwrap().clone();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 20, "kept trying: {} subscriptions", at.len());
    // 50 ms, 100 ms, ... capped at 5 s; each delay within [ceiling/2, ceiling]
    // (tokio timers round up to the millisecond).
    let slack = Duration::from_millis(2);
    let mut ceiling = Duration::from_millis(50);
    for (i, gap) in gaps.iter().enumerate() {
        assert!(
            *gap + slack >= ceiling / 2,
            "gap {i} {gap:?} below half of {ceiling:?}"
        );
        assert!(*gap <= ceiling + slack, "gap {i} {gap:?} above {ceiling:?}");
        ceiling = (ceiling * 2).min(Duration::from_secs(5));
    }
    // Bounded: after the ramp, at most one attempt per 2.5 s.
    assert!(at.len() <= 8 + 120 * 2 / 5, "{} subscriptions", at.len());
    // Jittered: the capped delays are not all the same.
    let capped: std::collections::HashSet<_> = gaps.iter().skip(8).collect();
    assert!(capped.len() > 1, "{capped:?}");
    let stats = status.current();
    assert_eq!(stats.subscriptions as usize, at.len());
    assert_eq!(stats.events, 0);

    drop(live);
    tokio::time::timeout(Duration::from_secs(1), status.finished())
        .await
        .expect("the task ends while backing off");
}

#[tokio::test(start_paused = true)]
async fn a_subscription_that_stayed_up_resets_the_backoff() {
    let master = common::redb_master("product").await;
    let source = ManualLiveStream::new();
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()))
        .with_live_stream(Arc::new(source.clone()));
    let mut status = live.live_stream_status().unwrap();
    live.start_live_stream();
    // Drive the delays up with quick losses.
    for n in 1..=6 {
        wait(&mut status, "subscribed", |s| {
            s.subscriptions >= n && s.subscribed
        })
        .await;
        source.disconnect();
    }
    wait(&mut status, "subscribed", |s| {
        s.subscriptions >= 7 && s.subscribed
    })
    .await;
    // Stay up past the cap, then lose it: the next delay is a first one again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    source.disconnect();
    let lost = Instant::now();
    wait(&mut status, "re-subscribed", |s| s.subscriptions >= 8).await;
    assert!(
        lost.elapsed() <= Duration::from_millis(52),
        "{:?}",
        lost.elapsed()
    );
}

#[tokio::test]
async fn the_task_ends_when_the_last_clone_is_dropped() {
    let master = common::redb_master("product").await;
    let (live, source, mut status) = live_with_manual(&master, Arc::new(MemCache::new())).await;
    let mut paged = live.clone();
    paged.set_pagination(Some(Pagination::new(2, 5)));
    let plain = live.clone();

    drop(live);
    drop(plain);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!status.current().finished, "one clone is left");
    assert_eq!(source.push(LiveEvent::Changed), 1, "still subscribed");
    wait(&mut status, "event", |s| s.events >= 1).await;

    drop(paged);
    tokio::time::timeout(Duration::from_secs(5), status.finished())
        .await
        .expect("the task ends");
    assert!(status.current().finished);
    assert!(!status.current().subscribed);
    assert_eq!(source.subscriber_count(), 0, "the subscription was dropped");
    assert_eq!(source.push(LiveEvent::Changed), 0);
}

#[tokio::test]
async fn rebuilding_a_live_table_replaces_its_task() {
    let master = common::redb_master("product").await;
    let source = ManualLiveStream::new();
    let first = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()))
        .with_live_stream(Arc::new(source.clone()));
    let mut old = first.live_stream_status().unwrap();
    let live = first.with_master_ipp(10);
    tokio::time::timeout(Duration::from_secs(5), old.finished())
        .await
        .expect("the replaced stack's task ends");
    let mut status = live.live_stream_status().unwrap();
    live.start_live_stream();
    wait(&mut status, "subscribed", |s| s.subscribed).await;
    assert_eq!(source.subscriber_count(), 1);
    assert_eq!(live.master_ipp(), Some(10));
}

#[test]
fn built_outside_a_runtime_the_task_starts_on_the_first_request() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let master = runtime.block_on(common::redb_master("product"));
    let source = ManualLiveStream::new();
    // No runtime here: building must not panic, and nothing subscribes yet.
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()))
        .with_live_stream(Arc::new(source.clone()));
    let mut status = live.live_stream_status().unwrap();
    assert_eq!(status.current().subscriptions, 0);
    assert_eq!(source.subscriber_count(), 0);
    runtime.block_on(async {
        assert_eq!(live.list_values().await.unwrap().len(), 12);
        wait(&mut status, "subscribed on first use", |s| s.subscribed).await;
        assert_eq!(source.push(LiveEvent::Changed), 1);
        wait(&mut status, "event", |s| s.events >= 1).await;
    });
    drop(live);
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), status.finished())
            .await
            .expect("ends");
    });
}

/// A cache whose invalidations can be made to fail: a third-party backend
/// implementing only the seed's three methods (the cache layer keeps its
/// invalidation state).
struct FailingInvalidation {
    inner: MemCache,
    fail: AtomicBool,
}

#[async_trait]
impl Cache for FailingInvalidation {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        self.inner.put(key, rows).await
    }
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(vantage_core::error!("invalidation refused by the test"));
        }
        self.inner.invalidate_prefix(prefix).await
    }
}

#[tokio::test]
async fn a_failed_invalidation_makes_reads_bypass_the_cache_not_serve_stale_rows() {
    let master = common::redb_master("product").await;
    let cache = Arc::new(FailingInvalidation {
        inner: MemCache::new(),
        fail: AtomicBool::new(false),
    });
    let (live, source, mut status) = live_with_manual(&master, cache.clone()).await;
    assert_eq!(live.list_values().await.unwrap().len(), 12);

    master
        .table
        .delete(&"p04_croissant".to_string())
        .await
        .unwrap();
    cache.fail.store(true, Ordering::SeqCst);
    assert_eq!(source.push(LiveEvent::deleted("p04_croissant")), 1);
    let stats = wait(&mut status, "event", |s| s.events >= 1).await;
    assert_eq!(stats.failed_invalidations, 1);
    assert!(stats.subscribed, "a failing cache does not stop the stream");
    assert_eq!(
        live.list_values().await.unwrap().len(),
        11,
        "not the stale slot"
    );

    cache.fail.store(false, Ordering::SeqCst);
    assert_eq!(live.list_values().await.unwrap().len(), 11);
}

// ---------------------------------------------------------------------------
// PostgreSQL: a real master and a real event source.

/// Poll `check` every 20 ms for up to 10 s (a real server: real time).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL product master with the notify trigger, and a LiveTable over
/// it listening on the schema's own channel, with LISTEN in place.
async fn pg_live() -> (common::Master, common::PgSchema, LiveTable, EventStatus) {
    let master = common::postgres_master("product").await;
    let schema = master.postgres.clone().unwrap();
    let channel = schema.name.clone();
    install_notify_trigger(
        &schema.pool,
        &format!("{}.product", schema.name),
        "id",
        &channel,
    )
    .await
    .expect("install the trigger");
    let source = PgNotifyLiveStream::new(common::postgres::pg_url(), channel);
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()))
        .with_live_stream(Arc::new(source));
    let mut status = live.live_stream_status().unwrap();
    live.start_live_stream();
    // The stream's first event says LISTEN is in place.
    wait(&mut status, "LISTEN", |s| s.events >= 1).await;
    (master, schema, live, status)
}

fn text(record: &vantage_types::Record<ciborium::Value>, field: &str) -> Option<String> {
    match record.get(field)? {
        ciborium::Value::Text(s) => Some(s.clone()),
        ciborium::Value::Integer(i) => Some(i128::from(*i).to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test]
async fn postgres_rows_changed_by_plain_sql_show_up_in_the_next_reads() {
    common::init_tracing();
    require_postgres!();
    let (_master, schema, live, status) = pg_live().await;
    let product = schema.qualified("product");
    let ids = || async {
        live.list_values()
            .await
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };

    // Insert.
    assert_eq!(ids().await.len(), 12);
    let before = status.current().events;
    schema
        .exec(&format!(
            "INSERT INTO {product} (id, name, calories, price, is_deleted, inventory_stock, bakery_id) \
             VALUES ('p13_bagel', 'Bagel', 260, 130, false, 30, 'rye_and_co')"
        ))
        .await;
    eventually("insert", || async {
        ids().await.contains(&"p13_bagel".to_string())
    })
    .await;
    assert!(
        status.current().events > before,
        "an event did it, not a timeout"
    );

    // Update: the id slot and the list slot both follow.
    let brioche = "p02_brioche".to_string();
    let row = live.get_value(&brioche).await.unwrap().unwrap();
    assert_eq!(text(&row, "price").as_deref(), Some("260"));
    assert!(live
        .cache()
        .get(&live.id_cache_key(&brioche))
        .await
        .unwrap()
        .is_some());
    schema
        .exec(&format!(
            "UPDATE {product} SET price = 999 WHERE id = 'p02_brioche'"
        ))
        .await;
    eventually("update (get)", || async {
        let row = live.get_value(&brioche).await.unwrap().unwrap();
        text(&row, "price").as_deref() == Some("999")
    })
    .await;
    let rows = live.list_values().await.unwrap();
    assert_eq!(text(&rows[&brioche], "price").as_deref(), Some("999"));

    // Delete.
    schema
        .exec(&format!("DELETE FROM {product} WHERE id = 'p05_focaccia'"))
        .await;
    eventually("delete", || async {
        !ids().await.contains(&"p05_focaccia".to_string())
    })
    .await;
    assert!(live
        .get_value(&"p05_focaccia".to_string())
        .await
        .unwrap()
        .is_none());
    assert_eq!(live.get_count().await.unwrap(), 12);
    assert_eq!(
        status.current().subscriptions,
        1,
        "one connection throughout"
    );
}

#[tokio::test]
async fn postgres_trigger_maps_operations_to_events() {
    require_postgres!();
    let schema = common::postgres::fresh_schema("notify").await;
    schema
        .exec("CREATE TABLE item (code TEXT PRIMARY KEY, qty BIGINT)")
        .await;
    let channel = schema.name.clone();
    // Unqualified: resolved through the pool's search path. Twice: idempotent.
    for _ in 0..2 {
        install_notify_trigger(&schema.pool, "item", "code", &channel)
            .await
            .unwrap();
    }
    let source = PgNotifyLiveStream::from_pool(schema.pool.clone(), channel.clone());
    assert!(format!("{source:?}").contains(&channel));
    let mut events = source.subscribe();
    macro_rules! next {
        () => {
            tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream is up")
        };
    }
    assert_eq!(next!(), LiveEvent::Changed, "LISTEN in place");

    schema
        .exec("INSERT INTO item VALUES ('a', 1), ('b', 2)")
        .await;
    assert_eq!(next!(), LiveEvent::inserted("a"));
    assert_eq!(next!(), LiveEvent::inserted("b"));
    schema
        .exec("UPDATE item SET qty = 5 WHERE code = 'a'")
        .await;
    assert_eq!(next!(), LiveEvent::updated("a"));
    schema
        .exec("UPDATE item SET code = 'c' WHERE code = 'b'")
        .await;
    assert_eq!(next!(), LiveEvent::deleted("b"), "id change: old id goes");
    assert_eq!(next!(), LiveEvent::inserted("c"), "id change: new id comes");
    schema.exec("DELETE FROM item WHERE code = 'a'").await;
    assert_eq!(next!(), LiveEvent::deleted("a"));
    schema.exec("TRUNCATE item").await;
    assert_eq!(next!(), LiveEvent::Changed, "truncate");
    // A rolled-back change notifies nobody; the next committed one arrives.
    schema
        .exec("BEGIN; INSERT INTO item VALUES ('x', 0); ROLLBACK")
        .await;
    schema.exec("INSERT INTO item VALUES ('y', 0)").await;
    assert_eq!(next!(), LiveEvent::inserted("y"));

    let too_long = "c".repeat(64);
    assert!(
        install_notify_trigger(&schema.pool, "item", "code", &too_long)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn postgres_garbage_notify_payload_is_survived() {
    common::init_tracing();
    require_postgres!();
    let (_master, schema, live, mut status) = pg_live().await;
    let channel = schema.name.clone();
    let key = live.page_cache_key(None);
    live.list_values().await.unwrap();
    assert!(live.cache().get(&key).await.unwrap().is_some());

    let before = status.current().events;
    for payload in ["garbage", "{\"op\":\"MERGE\",\"id\":\"x\"}", ""] {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&channel)
            .bind(payload)
            .execute(&schema.pool)
            .await
            .unwrap();
    }
    let stats = wait(&mut status, "garbage handled", |s| s.events >= before + 3).await;
    assert!(stats.subscribed, "still listening");
    assert_eq!(stats.subscriptions, 1, "no reconnect needed");
    assert!(
        live.cache().get(&key).await.unwrap().is_none(),
        "treated as a change"
    );

    // Real changes still arrive.
    live.list_values().await.unwrap();
    schema
        .exec(&format!(
            "UPDATE {} SET name = 'Renamed' WHERE id = 'p06_muffin'",
            schema.qualified("product")
        ))
        .await;
    eventually("update after garbage", || async {
        let rows = live.list_values().await.unwrap();
        text(&rows["p06_muffin"], "name").as_deref() == Some("Renamed")
    })
    .await;
}

#[tokio::test]
async fn postgres_lost_connection_is_resubscribed_and_the_cache_dropped() {
    common::init_tracing();
    require_postgres!();
    let (_master, schema, live, mut status) = pg_live().await;
    let key = live.page_cache_key(None);
    live.list_values().await.unwrap();

    // Kill the listening connection from outside.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND query = $1",
    )
    .bind(format!("LISTEN \"{}\"", schema.name))
    .fetch_all(&schema.pool)
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "exactly the listener");

    let stats = wait(&mut status, "re-subscribed", |s| {
        s.subscriptions >= 2 && s.subscribed
    })
    .await;
    assert!(stats.subscriptions >= 2);
    assert!(
        live.cache().get(&key).await.unwrap().is_none(),
        "dropped on re-subscribe"
    );

    // LISTEN is back: wait for the new connection's first event, then change.
    let after = stats.events;
    wait(&mut status, "LISTEN again", |s| s.events > after).await;
    live.list_values().await.unwrap();
    schema
        .exec(&format!(
            "DELETE FROM {} WHERE id = 'p07_pain_au_chocolat'",
            schema.qualified("product")
        ))
        .await;
    eventually("delete after reconnect", || async {
        !live
            .list_values()
            .await
            .unwrap()
            .contains_key("p07_pain_au_chocolat")
    })
    .await;
}

// ---------------------------------------------------------------------------
// SurrealDB: a real master and a real event source (`LIVE SELECT`).

/// A LiveTable over `master` (a SurrealDB product master) whose live stream
/// connects to `url`, with the live query in place.
async fn surreal_live_over(master: &common::Master, url: &str) -> (LiveTable, EventStatus) {
    let source = SurrealLiveStream::new(url, "product").expect("a valid URL");
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(MemCache::new()))
        .with_live_stream(Arc::new(source));
    let mut status = live.live_stream_status().unwrap();
    // Tasks start on first use; start it without a read.
    live.start_live_stream();
    // The stream's first event says the live query runs.
    wait(&mut status, "LIVE SELECT", |s| s.events >= 1).await;
    (live, status)
}

fn ids_of(rows: &common::Rows) -> Vec<String> {
    rows.keys().cloned().collect()
}

#[tokio::test]
async fn surreal_rows_changed_by_a_second_connection_show_up_in_the_next_reads() {
    common::init_tracing();
    require_surreal!();
    let master = common::surreal_master("product").await;
    let base = master.surreal.clone().unwrap();
    let (live, status) = surreal_live_over(&master, &base.url()).await;
    let ids = || async { ids_of(&live.list_values().await.unwrap()) };

    // Insert, through a second connection's own table.
    let model = common::Model::load();
    let other = common::surreal::surreal_table(base.connect().await, model.entity("product"));
    assert_eq!(ids().await.len(), 12);
    let before = status.current().events;
    other
        .insert_value(&"p13_bagel".to_string(), &common::extra_product("Bagel"))
        .await
        .unwrap();
    eventually("insert", || async {
        ids().await.contains(&"p13_bagel".to_string())
    })
    .await;
    assert!(
        status.current().events > before,
        "an event did it, not a timeout"
    );

    // Update, in plain SurrealQL: the id slot and the list slot both follow.
    let brioche = "p02_brioche".to_string();
    let row = live.get_value(&brioche).await.unwrap().unwrap();
    assert_eq!(text(&row, "price").as_deref(), Some("260"));
    assert!(live
        .cache()
        .get(&live.id_cache_key(&brioche))
        .await
        .unwrap()
        .is_some());
    base.query("UPDATE product:p02_brioche SET price = 999")
        .await;
    eventually("update (get)", || async {
        let row = live.get_value(&brioche).await.unwrap().unwrap();
        text(&row, "price").as_deref() == Some("999")
    })
    .await;
    let rows = live.list_values().await.unwrap();
    assert_eq!(text(&rows[&brioche], "price").as_deref(), Some("999"));

    // Delete.
    base.query("DELETE product:p05_focaccia").await;
    eventually("delete", || async {
        !ids().await.contains(&"p05_focaccia".to_string())
    })
    .await;
    assert!(live
        .get_value(&"p05_focaccia".to_string())
        .await
        .unwrap()
        .is_none());
    assert_eq!(live.get_count().await.unwrap(), 12);
    assert_eq!(
        status.current().subscriptions,
        1,
        "one connection throughout"
    );
}

#[tokio::test]
async fn surreal_live_maps_operations_to_events() {
    require_surreal!();
    let base = common::surreal::fresh_database("live").await;
    base.query("CREATE item:seed SET qty = 0").await;
    let source = SurrealLiveStream::new(&base.url(), "item").unwrap();
    assert_eq!(source.table(), "item");
    assert_eq!(source.database(), base.database);
    let debug = format!("{source:?}");
    assert!(
        debug.contains("item") && !debug.contains("root:root"),
        "{debug}"
    );
    let qualified = source.clone().with_qualified_ids();
    let mut events = source.subscribe();
    let mut full = qualified.subscribe();
    macro_rules! next {
        ($events:expr) => {
            tokio::time::timeout(Duration::from_secs(10), $events.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream is up")
        };
    }
    assert_eq!(next!(events), LiveEvent::Changed, "LIVE in place");
    assert_eq!(next!(full), LiveEvent::Changed, "LIVE in place");

    base.query("CREATE item:a SET qty = 1").await;
    assert_eq!(next!(events), LiveEvent::inserted("a"));
    assert_eq!(next!(full), LiveEvent::inserted("item:a"), "qualified ids");
    base.query("UPDATE item:a SET qty = 5").await;
    assert_eq!(next!(events), LiveEvent::updated("a"));
    base.query("UPSERT item:b SET qty = 2").await;
    assert_eq!(
        next!(events),
        LiveEvent::inserted("b"),
        "an upsert that creates"
    );
    // Other tables are not heard.
    base.query("CREATE other:z SET qty = 1").await;
    base.query("DELETE item:a").await;
    assert_eq!(next!(events), LiveEvent::deleted("a"));
    // Keys that are numbers, or need quoting, come back as their text.
    base.query("CREATE item:42 SET qty = 1").await;
    assert_eq!(next!(events), LiveEvent::inserted("42"));
    base.query("CREATE item:⟨x y/z⟩ SET qty = 1").await;
    assert_eq!(next!(events), LiveEvent::inserted("x y/z"));
    // A key with no id text (an array) is a change of anything.
    base.query("CREATE item:['a', 1] SET qty = 1").await;
    assert_eq!(next!(events), LiveEvent::Changed);
    // A statement touching many rows: one event per row.
    base.query("DELETE item WHERE qty = 1").await;
    let mut deleted = Vec::new();
    for _ in 0..3 {
        deleted.push(next!(events));
    }
    assert!(
        deleted.contains(&LiveEvent::deleted("42"))
            && deleted.contains(&LiveEvent::deleted("x y/z")),
        "{deleted:?}"
    );
}

#[tokio::test]
async fn surreal_live_query_is_killed_when_the_last_live_table_is_dropped() {
    common::init_tracing();
    require_surreal!();
    let master = common::surreal_master("product").await;
    let base = master.surreal.clone().unwrap();
    let (live, _status) = surreal_live_over(&master, &base.url()).await;
    assert_eq!(base.live_queries("product").await, 1, "one live query");

    let clone = live.clone();
    drop(live);
    // A clone keeps the subscription (and the task) alive.
    clone.list_values().await.unwrap();
    assert_eq!(base.live_queries("product").await, 1);
    drop(clone);
    eventually("live query killed", || async {
        base.live_queries("product").await == 0
    })
    .await;
}

#[tokio::test]
async fn surreal_lost_connection_is_resubscribed_and_the_cache_dropped() {
    common::init_tracing();
    require_surreal!();
    let master = common::surreal_master("product").await;
    let base = master.surreal.clone().unwrap();
    let proxy = common::proxy::Proxy::start(common::surreal::surreal_addr()).await;
    let (live, mut status) = surreal_live_over(&master, &base.url_via(proxy.addr())).await;
    let key = live.page_cache_key(None);
    live.list_values().await.unwrap();
    assert!(live.cache().get(&key).await.unwrap().is_some());

    // The connection goes.
    proxy.cut();
    let stats = wait(&mut status, "re-subscribed", |s| {
        s.subscriptions >= 2 && s.subscribed
    })
    .await;
    assert!(
        live.cache().get(&key).await.unwrap().is_none(),
        "dropped on re-subscribe"
    );

    // A new live query on a new connection: wait for its first event, then
    // change a row.
    let after = stats.events;
    wait(&mut status, "LIVE again", |s| s.events > after).await;
    assert_eq!(proxy.connections(), 2, "a new connection");
    eventually("the old live query is gone", || async {
        base.live_queries("product").await == 1
    })
    .await;
    live.list_values().await.unwrap();
    base.query("DELETE product:p07_pain_au_chocolat").await;
    eventually("delete after reconnect", || async {
        !live
            .list_values()
            .await
            .unwrap()
            .contains_key("p07_pain_au_chocolat")
    })
    .await;
}

#[tokio::test]
async fn surreal_garbage_frames_are_survived() {
    common::init_tracing();
    require_surreal!();
    let master = common::surreal_master("product").await;
    let base = master.surreal.clone().unwrap();
    let proxy = common::proxy::Proxy::start(common::surreal::surreal_addr()).await;
    let (live, mut status) = surreal_live_over(&master, &base.url_via(proxy.addr())).await;
    let key = live.page_cache_key(None);
    live.list_values().await.unwrap();

    // Two WebSocket frames from "the server" while it is quiet: a binary
    // frame that is not CBOR, and a text frame on the cbor protocol.
    let before = status.current().events;
    proxy.inject(vec![0x82, 0x02, 0xff, 0x00]);
    proxy.inject(vec![0x81, 0x03, b'a', b'b', b'c']);
    let stats = wait(&mut status, "garbage handled", |s| s.events >= before + 2).await;
    assert!(stats.subscribed, "still listening");
    assert_eq!(stats.subscriptions, 1, "no reconnect needed");
    assert!(
        live.cache().get(&key).await.unwrap().is_none(),
        "treated as a change"
    );

    // Real changes still arrive.
    live.list_values().await.unwrap();
    base.query("UPDATE product:p06_muffin SET name = 'Renamed'")
        .await;
    eventually("update after garbage", || async {
        let rows = live.list_values().await.unwrap();
        text(&rows["p06_muffin"], "name").as_deref() == Some("Renamed")
    })
    .await;
}
