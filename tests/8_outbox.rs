//! The outbox (`LiveTable::with_outbox`) over real masters: writes accepted
//! while the master is unreachable, read back while pending, applied in
//! order once it returns; rejections to the dead letters; the bound; a
//! broken outbox file; a process killed mid-way; a real PostgreSQL outage
//! through a proxy; the classification of real drivers' errors.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ciborium::Value;
use common::unreachable::Switch;
use common::{master_rows, product, Master};
use vantage_dataset::prelude::{InsertableValueSet, ReadableValueSet, WritableValueSet};
use vantage_live::outbox::error::{OpenOutboxError, OutboxFull};
use vantage_live::outbox::{classify, Failure, OutboxLayer, Verdict, FILE_NAME};
use vantage_live::{LiveTable, MemCache, WriteRequest};
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

const PATIENCE: Duration = Duration::from_secs(30);

fn price(p: i64) -> Record<Value> {
    [("price".to_string(), Value::Integer(p.into()))]
        .into_iter()
        .collect()
}

fn ids(rows: &common::Rows) -> Vec<String> {
    rows.keys().cloned().collect()
}

/// The error and its sources.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// `live` with the master behind a switch, an outbox in `folder`, and a
/// short backoff.
fn outboxed(master: &Master, folder: &Path, key: &str) -> (LiveTable, Arc<Switch>) {
    let (table, switch) = Switch::wrap(master.table.clone());
    let outbox = OutboxLayer::open(folder)
        .expect("open the outbox")
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(50));
    let live = LiveTable::new(table, key, Arc::new(MemCache::new())).with_outbox_layer(outbox);
    (live, switch)
}

async fn flush(live: &LiveTable) {
    let outbox = live.outbox().expect("an outbox");
    outbox.retry_now();
    tokio::time::timeout(PATIENCE, outbox.flush())
        .await
        .expect("the outbox drained in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_offline_read_back_while_pending_and_land_in_order() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let kind = master.kind;
        let dir = tempfile::tempdir().unwrap();
        let (live, switch) = outboxed(&master, dir.path(), "products");
        // Warm the slots the offline reads use.
        let before = live.list_values().await.unwrap();
        assert_eq!(live.get_count().await.unwrap(), before.len() as i64);
        let seeded = ids(&before);
        let (first, second) = (seeded[0].clone(), seeded[1].clone());
        assert!(live.get_value(&first).await.unwrap().is_some());

        switch.set_down(true);
        let bun = product("Outbox bun", 7);
        let answered = live
            .insert_value(&"p_outbox".to_string(), &bun)
            .await
            .unwrap();
        assert_eq!(
            answered, bun,
            "{kind}: an insert answers the record as written"
        );
        let generated = live
            .insert_return_id_value(&product("Outbox roll", 8))
            .await
            .unwrap();
        assert_eq!(
            live.patch_value(&first, &price(555)).await.unwrap(),
            price(555),
            "{kind}: a patch answers the partial as written"
        );
        live.delete(&second).await.unwrap();

        // Reads show the pending writes; the master has none of them.
        assert_eq!(
            live.get_value(&"p_outbox".to_string()).await.unwrap(),
            Some(bun.clone())
        );
        assert!(live.get_value(&generated).await.unwrap().is_some());
        let patched = live.get_value(&first).await.unwrap().unwrap();
        assert_eq!(common::int_field(&patched, "price"), Some(555), "{kind}");
        assert_eq!(live.get_value(&second).await.unwrap(), None, "{kind}");
        let list = live.list_values().await.unwrap();
        let mut expected: Vec<String> =
            seeded.iter().filter(|id| **id != second).cloned().collect();
        expected.push("p_outbox".into());
        expected.push(generated.clone());
        assert_eq!(
            ids(&list),
            expected,
            "{kind}: pending inserts after the master's rows"
        );
        assert_eq!(
            live.get_count().await.unwrap(),
            expected.len() as i64,
            "{kind}"
        );
        // Pages: every row of the list on exactly one page, in order.
        let mut paged = Vec::new();
        for page in 1..=((expected.len() as i64) / 5 + 2) {
            let mut view = live.clone();
            view.set_pagination(Some(Pagination::new(page, 5)));
            let rows = view.list_values().await.unwrap();
            assert!(rows.len() <= 5);
            paged.extend(ids(&rows));
        }
        assert_eq!(paged, expected, "{kind}: pages");
        assert_eq!(
            live.pending_ids(),
            vec![
                "p_outbox".to_string(),
                generated.clone(),
                first.clone(),
                second.clone()
            ]
        );
        let stats = live.outbox_stats().unwrap();
        assert_eq!(stats.pending, 4, "{kind}");
        assert_eq!(
            ids(&master_rows(&master.table, None).await),
            seeded,
            "{kind}: master untouched"
        );

        // The master comes back: everything lands, in order, once.
        switch.set_down(false);
        flush(&live).await;
        let stats = live.outbox_stats().unwrap();
        assert_eq!(
            (stats.pending, stats.applied, stats.dead_letters),
            (0, 4, 0),
            "{kind}"
        );
        assert!(
            stats.unreachable_attempts > 0,
            "{kind}: the drain met the outage"
        );
        assert!(live.pending_ids().is_empty());
        let on_master = master_rows(&master.table, None).await;
        assert_eq!(ids(&on_master).len(), expected.len(), "{kind}");
        for id in &expected {
            assert!(on_master.contains_key(id), "{kind}: {id} on the master");
        }
        assert_eq!(common::int_field(&on_master[&first], "price"), Some(555));
        // Reads now come from the master, through the cache, as it holds them.
        let after = live.list_values().await.unwrap();
        assert_eq!(after, on_master, "{kind}: no overlay left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_write_is_a_dead_letter_and_the_writes_behind_it_go_on() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let kind = master.kind;
        let dir = tempfile::tempdir().unwrap();
        let (live, _switch) = outboxed(&master, dir.path(), "products");
        let outbox = live.outbox().unwrap().clone();
        let seeded = ids(&master_rows(&master.table, None).await);
        // A patch of a row that does not exist: every master refuses it.
        let bad = outbox
            .submit(WriteRequest::Patch {
                id: "no_such_row".into(),
                partial: price(1),
            })
            .await
            .unwrap();
        let good = outbox
            .submit(WriteRequest::Insert {
                id: "p_after".into(),
                record: product("After", 3),
            })
            .await
            .unwrap();
        let Verdict::Rejected(dead) = tokio::time::timeout(PATIENCE, bad.verdict()).await.unwrap()
        else {
            panic!("{kind}: the patch of a missing row was not rejected");
        };
        assert_eq!(dead.write.seq, bad.seq());
        assert!(!dead.error.is_empty());
        assert!(
            matches!(
                tokio::time::timeout(PATIENCE, good.verdict())
                    .await
                    .unwrap(),
                Verdict::Applied(_)
            ),
            "{kind}: the write behind the rejected one was applied"
        );
        assert_eq!(outbox.dead_letters().len(), 1, "{kind}");
        let on_master = master_rows(&master.table, None).await;
        assert_eq!(on_master.len(), seeded.len() + 1, "{kind}");
        assert!(on_master.contains_key("p_after"));
        // Dead letters are durable: they survive closing and reopening.
        outbox.close().await;
        drop((live, outbox, bad, good));
        let reopened = OutboxLayer::open(dir.path()).expect("reopen");
        let letters = reopened.handle().dead_letters();
        assert_eq!(
            letters.len(),
            1,
            "{kind}: the dead letter survived a reopen"
        );
        assert!(letters[0].to_string().contains("no_such_row"));
        assert_eq!(reopened.handle().clear_dead_letters().await.unwrap(), 1);
        assert!(reopened.handle().dead_letters().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_constraint_violation_is_rejected() {
    // SQLite's own UNIQUE constraint: inserting a seeded id is refused.
    let master = common::sqlite_master("product").await;
    let dir = tempfile::tempdir().unwrap();
    let (live, _switch) = outboxed(&master, dir.path(), "products");
    let seeded = ids(&master_rows(&master.table, None).await);
    let outbox = live.outbox().unwrap();
    let dup = outbox
        .submit(WriteRequest::Insert {
            id: seeded[0].clone(),
            record: product("Duplicate", 1),
        })
        .await
        .unwrap();
    match tokio::time::timeout(PATIENCE, dup.verdict()).await.unwrap() {
        Verdict::Rejected(dead) => assert!(dead.error.contains("UNIQUE"), "{}", dead.error),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_maximum_a_write_is_refused_and_nothing_is_stored() {
    let master = common::redb_master("product").await;
    let dir = tempfile::tempdir().unwrap();
    let (table, switch) = Switch::wrap(master.table.clone());
    switch.set_down(true);
    let outbox = OutboxLayer::open(dir.path()).unwrap().max_pending(3);
    let live =
        LiveTable::new(table, "products", Arc::new(MemCache::new())).with_outbox_layer(outbox);
    for n in 0..3 {
        live.insert_value(&format!("p_full_{n}"), &product("Full", n))
            .await
            .unwrap();
    }
    let err = live
        .insert_value(&"p_full_3".to_string(), &product("Full", 3))
        .await
        .expect_err("the fourth write is refused");
    let full = chain(&err)
        .find_map(|e| e.downcast_ref::<OutboxFull>())
        .unwrap_or_else(|| panic!("OutboxFull in the error's sources: {err}"));
    assert_eq!(full.max_pending(), 3);
    assert!(err.to_string().contains("outbox is full"), "{err}");
    assert_eq!(live.outbox_stats().unwrap().pending, 3);
    assert_eq!(
        live.pending_ids(),
        vec!["p_full_0", "p_full_1", "p_full_2"],
        "the refused write is not stored"
    );
}

/// Bytes of a real outbox with pending writes, made with the master down.
async fn outbox_with_pending(folder: &Path) {
    let master = common::redb_master("product").await;
    let (table, switch) = Switch::wrap(master.table.clone());
    switch.set_down(true);
    let live = LiveTable::new(table, "products", Arc::new(MemCache::new()))
        .with_outbox(folder)
        .unwrap();
    for n in 0..20 {
        live.insert_value(&format!("p_{n:02}"), &product("Kept", n))
            .await
            .unwrap();
    }
    live.outbox().unwrap().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_outbox_file_names_itself_and_never_touches_the_master() {
    let master = common::sqlite_master("product").await;
    let before = master_rows(&master.table, None).await;
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let good = tempfile::tempdir().unwrap();
    outbox_with_pending(good.path()).await;
    let full = std::fs::read(good.path().join(FILE_NAME)).unwrap();
    let foreign = {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("x.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("other");
            txn.open_table(def).unwrap().insert("k", 1).unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        std::fs::read(dir.path().join("x.redb")).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", garbage),
        ("short garbage", b"this is not an outbox".to_vec()),
        ("truncated", full[..full.len().min(300)].to_vec()),
        ("truncated to half", full[..full.len() / 2].to_vec()),
        ("another redb file", foreign),
    ];
    for (what, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        std::fs::write(&file, &bytes).unwrap();
        let (table, switch) = Switch::wrap(master.table.clone());
        let err = LiveTable::new(table, "products", Arc::new(MemCache::new()))
            .with_outbox(dir.path())
            .expect_err(what);
        let message = err.to_string();
        assert!(
            matches!(
                err,
                OpenOutboxError::Corrupt { .. } | OpenOutboxError::Io { .. }
            ),
            "{what}: {err:?}"
        );
        assert_eq!(err.path(), file, "{what}");
        assert!(
            message.contains(&file.display().to_string()),
            "{what}: {message}"
        );
        assert!(
            message.contains("nothing was sent to the master"),
            "{what}: {message}"
        );
        assert_eq!(switch.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
        if what == "another redb file" {
            // redb itself rewrites a header flag when it opens and closes a
            // file; what matters is that nothing was added to it.
            let db = redb::Database::open(&file).expect("still a redb file");
            let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
            let tables: Vec<String> = txn
                .list_tables()
                .unwrap()
                .map(|t| redb::TableHandle::name(&t).to_string())
                .collect();
            assert_eq!(tables, ["other"], "{what}: nothing added to it");
        } else {
            assert!(
                std::fs::read(&file).unwrap() == bytes,
                "{what}: the file is left alone"
            );
        }
    }
    assert_eq!(
        master_rows(&master.table, None).await,
        before,
        "the master is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_drivers_connection_errors_are_unreachable() {
    // SQLite: a closed pool, through the real vantage-sql insert.
    let master = common::sqlite_master("product").await;
    master.sqlite.as_ref().unwrap().pool().close().await;
    let err = master
        .table
        .insert_value(&"x".to_string(), &product("X", 1))
        .await
        .expect_err("a closed pool refuses");
    assert_eq!(classify(&err), Failure::Unreachable, "{err}");
    // PostgreSQL: a refused connection, as sqlx reports it, wrapped the way
    // vantage-sql wraps its errors.
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect("postgres://x@127.0.0.1:1/x")
        .await
        .expect_err("nothing listens on port 1");
    let err = vantage_core::error!("PostgreSQL query failed", details = refused.to_string());
    assert_eq!(classify(&err), Failure::Unreachable, "{err}");
    // And the real drivers' refusals are rejections.
    let master = common::sqlite_master("product").await;
    let id = ids(&master_rows(&master.table, None).await)[0].clone();
    let err = master
        .table
        .insert_value(&id, &product("Dup", 1))
        .await
        .expect_err("a duplicate id");
    assert_eq!(classify(&err), Failure::Rejected, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_through_a_real_connection() {
    common::init_tracing();
    require_postgres!();
    let seeded = common::postgres_master("product").await;
    let schema = seeded.postgres.clone().unwrap();
    let target: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = common::proxy::Proxy::start(target).await;
    // The same schema, reached through the proxy.
    let base = common::postgres::pg_url();
    let proxied_base = base.replace("127.0.0.1:5432", &proxy.addr().to_string());
    assert_ne!(proxied_base, base, "the test URL names 127.0.0.1:5432");
    let url = format!("{proxied_base}?options=-c%20search_path%3D{}", schema.name);
    let db = vantage_sql::postgres::PostgresDB::connect(&url)
        .await
        .expect("connect through the proxy");
    let model = common::Model::load();
    let entity = model.entity("product");
    let table = common::masters::with_columns(
        vantage_table::table::Table::new(entity.table.clone(), db),
        entity,
    );
    let master = vantage_table::any::AnyTable::from_table(table);
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxLayer::open(dir.path())
        .unwrap()
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200));
    let live =
        LiveTable::new(master, "pg-products", Arc::new(MemCache::new())).with_outbox_layer(outbox);
    let before = live.list_values().await.unwrap();

    proxy.go_down();
    for n in 0..5 {
        live.insert_value(&format!("p_pg_{n}"), &product("Offline", n))
            .await
            .expect("accepted while PostgreSQL is unreachable");
    }
    // The drain meets the real driver's errors and keeps the writes.
    let outbox = live.outbox().unwrap().clone();
    let stalled = tokio::time::timeout(PATIENCE, outbox.flush_or_stall())
        .await
        .unwrap();
    assert!(
        matches!(
            stalled,
            vantage_live::outbox::FlushOutcome::Stalled { pending: 5, .. }
        ),
        "{stalled:?}"
    );
    let stats = outbox.stats();
    assert_eq!(
        stats.dead_letters, 0,
        "a connection failure is not a rejection: {stats:?}"
    );
    let rows = live.list_values().await.unwrap();
    assert_eq!(rows.len(), before.len() + 5, "pending rows are listed");
    assert_eq!(live.pending_ids().len(), 5);
    let direct: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {}",
        schema.qualified(&entity.table)
    ))
    .fetch_one(&schema.pool)
    .await
    .unwrap();
    assert_eq!(
        direct as usize,
        before.len(),
        "nothing reached PostgreSQL yet"
    );

    proxy.come_back();
    flush(&live).await;
    let stats = outbox.stats();
    assert_eq!(
        (stats.pending, stats.applied, stats.dead_letters),
        (0, 5, 0),
        "{stats:?}"
    );
    let direct: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {}",
        schema.qualified(&entity.table)
    ))
    .fetch_one(&schema.pool)
    .await
    .unwrap();
    assert_eq!(direct as usize, before.len() + 5, "every write landed once");
    eprintln!(
        "postgres outage: {} unreachable attempts, last error: {:?}",
        stats.unreachable_attempts, stats.last_error
    );
}

/// The first insert lands and loses its answer (so its retry is a replay,
/// checked by reading the row back); that check panics.
#[derive(Default)]
struct PanickingReplayCheck {
    landed: std::sync::atomic::AtomicBool,
}

impl common::hooked::Hooks for PanickingReplayCheck {
    fn read<'a, T: Send + 'a>(
        &'a self,
        call: common::hooked::Call<'a, T>,
    ) -> common::hooked::Call<'a, T> {
        if self.landed.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("the replay check blew up");
        }
        call
    }

    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _id: Option<&'a str>,
        call: common::hooked::Call<'a, T>,
    ) -> common::hooked::Call<'a, T> {
        Box::pin(async move {
            call.await?;
            self.landed.store(true, std::sync::atomic::Ordering::SeqCst);
            Err(common::unreachable::connection_error("the answer was lost"))
        })
    }
}

/// A panic while checking a replay is a failed attempt, like a panic in the
/// write: the write moves to the dead letters with the panic's text, and
/// the writes behind it go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_replay_check_is_a_dead_letter_not_a_dead_drain() {
    let master = common::redb_master("product").await;
    let dir = tempfile::tempdir().unwrap();
    let table = common::hooked::Hooked::wrap(
        master.table.clone(),
        Arc::new(PanickingReplayCheck::default()),
    );
    let outbox = OutboxLayer::open(dir.path())
        .unwrap()
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(5));
    let live =
        LiveTable::new(table, "products", Arc::new(MemCache::new())).with_outbox_layer(outbox);
    live.insert_value(&"p_boom".to_string(), &product("Boom", 1))
        .await
        .unwrap();
    let handle = live.outbox().expect("an outbox").clone();
    tokio::time::timeout(PATIENCE, handle.flush())
        .await
        .expect("the drain went on");
    let dead = handle.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].error.contains("replay check panicked"),
        "{}",
        dead[0].error
    );
    assert!(handle.pending_ids().is_empty());
}

/// A drain whose runtime shut down before it finished counts as stopped:
/// a verdict still pending answers `Unsettled` and `close` returns, instead
/// of waiting for ever; the write stays in the file for the next open.
#[test]
fn a_drain_cut_off_by_its_runtime_stops_verdicts_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    let (handle, seq) = first.block_on(async {
        let master = common::redb_master("product").await;
        let (table, switch) = Switch::wrap(master.table.clone());
        switch.set_down(true);
        let outbox = OutboxLayer::open(dir.path()).unwrap();
        let live =
            LiveTable::new(table, "products", Arc::new(MemCache::new())).with_outbox_layer(outbox);
        live.insert_value(&"p_cut".to_string(), &product("Cut", 1))
            .await
            .unwrap();
        let handle = live.outbox().expect("an outbox").clone();
        let seq = handle.pending()[0].seq;
        // The worker is running (and failing against the master).
        tokio::time::timeout(PATIENCE, handle.flush_or_stall())
            .await
            .expect("an attempt failed");
        (handle, seq)
    });
    drop(first);
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let verdict = tokio::time::timeout(PATIENCE, handle.verdict(seq))
            .await
            .expect("the verdict answers");
        assert!(matches!(verdict, Verdict::Unsettled), "{verdict:?}");
        tokio::time::timeout(PATIENCE, handle.close())
            .await
            .expect("close returns");
    });
    assert_eq!(handle.pending_ids(), vec!["p_cut"], "still pending");
}
