//! outbox_bench: what an offline write costs, and how fast the outbox
//! drains.
//!
//! ```text
//! cargo run --release --example outbox_bench [-- WRITES]
//! ```
//!
//! Three figures, medians over `WRITES` writes (default 300), each on a
//! fresh temp folder:
//!
//! 1. **local acknowledgement**: `LiveTable::insert_value` with an outbox,
//!    the master unreachable (so the drain does not compete): the time until
//!    the write is stored in `outbox.redb` with a synced commit and
//!    answered;
//! 2. **direct redb master insert**: `AnyTable::insert_value` on a
//!    `vantage-redb` master in a local file (its own synced commit), no
//!    LiveTable: what a write costs with no outbox and a local master;
//! 3. **drain rate**: `WRITES` inserts accepted while a SQLite master
//!    (local file) is unreachable, then the master comes back; writes per
//!    second from the first retry to an empty outbox (each write: one
//!    master insert through the cache layer, its invalidation, and one
//!    synced removal from the outbox).
//!
//! For scale it also times direct inserts into the same SQLite master.
//! Ratio (1) / (2) is the figure the issue asks for. The lead can fold the
//! same three measurements into `bench_report`.

#[path = "../tests/common/bakery.rs"]
#[allow(dead_code)]
mod bakery;
#[path = "../tests/common/hooked.rs"]
#[allow(dead_code)]
mod hooked;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bakery::{with_columns, Model};
use ciborium::Value;
use vantage_dataset::prelude::WritableValueSet;
use vantage_live::outbox::OutboxLayer;
use vantage_live::{LiveTable, MemCache};
use vantage_redb::Redb;
use vantage_sql::sqlite::SqliteDB;
use vantage_table::any::AnyTable;
use vantage_table::table::Table;
use vantage_types::Record;

/// Fails every call while down, as a refused connection.
struct Switch(AtomicBool);

impl hooked::Hooks for Switch {
    fn read<'a, T: Send + 'a>(&'a self, call: hooked::Call<'a, T>) -> hooked::Call<'a, T> {
        Box::pin(async move {
            self.check()?;
            call.await
        })
    }
    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _id: Option<&'a str>,
        call: hooked::Call<'a, T>,
    ) -> hooked::Call<'a, T> {
        Box::pin(async move {
            self.check()?;
            call.await
        })
    }
}

impl Switch {
    fn check(&self) -> vantage_core::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down").into())
        } else {
            Ok(())
        }
    }
}

fn row(n: usize) -> Record<Value> {
    [
        ("name", Value::Text(format!("Bench {n}"))),
        ("calories", Value::Integer(100.into())),
        ("price", Value::Integer((n as i64).into())),
        ("is_deleted", Value::Bool(false)),
        ("inventory_stock", Value::Integer(1.into())),
        ("bakery_id", Value::Text("rye_and_co".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn redb_table(path: &std::path::Path) -> AnyTable {
    let model = Model::load();
    let entity = model.entity("product");
    let db = Redb::create(path).expect("create the redb master");
    AnyTable::from_table(with_columns(Table::new(entity.table.clone(), db), entity))
}

#[tokio::main]
async fn main() {
    let writes: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("WRITES is a number"))
        .unwrap_or(300);

    // 1. Local acknowledgement, master unreachable.
    let dir = tempfile::tempdir().unwrap();
    let switch = Arc::new(Switch(AtomicBool::new(true)));
    let master = hooked::Hooked::wrap(redb_table(&dir.path().join("master.redb")), switch.clone());
    let live = LiveTable::new(master, "bench", Arc::new(MemCache::new()))
        .with_outbox(dir.path().join("outbox"))
        .unwrap();
    let mut ack = Vec::with_capacity(writes);
    for n in 0..writes {
        let started = Instant::now();
        live.insert_value(&format!("b{n:06}"), &row(n))
            .await
            .unwrap();
        ack.push(started.elapsed());
    }
    live.outbox().unwrap().close().await;

    // 2. Direct insert into a local redb master.
    let dir2 = tempfile::tempdir().unwrap();
    let direct_master = redb_table(&dir2.path().join("master.redb"));
    let mut direct = Vec::with_capacity(writes);
    for n in 0..writes {
        let started = Instant::now();
        direct_master
            .insert_value(&format!("b{n:06}"), &row(n))
            .await
            .unwrap();
        direct.push(started.elapsed());
    }

    // 3. Drain rate into a SQLite master.
    let dir3 = tempfile::tempdir().unwrap();
    let model = Model::load();
    let entity = model.entity("product");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir3.path().join("master.sqlite").display()
    );
    let db = SqliteDB::connect(&url).await.unwrap();
    sqlx::query(&entity.create_table_sql(false, false))
        .execute(db.pool())
        .await
        .unwrap();
    let sqlite = AnyTable::from_table(with_columns(Table::new(entity.table.clone(), db), entity));
    // For scale: direct inserts into the same SQLite master, one at a time.
    let mut sqlite_direct = Vec::with_capacity(writes);
    for n in 0..writes {
        let started = Instant::now();
        sqlite
            .insert_value(&format!("s{n:06}"), &row(n))
            .await
            .unwrap();
        sqlite_direct.push(started.elapsed());
    }
    let sqlite_direct = median(sqlite_direct);
    let switch = Arc::new(Switch(AtomicBool::new(true)));
    let master = hooked::Hooked::wrap(sqlite, switch.clone());
    let outbox = OutboxLayer::open(dir3.path().join("outbox"))
        .unwrap()
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(1))
        .max_pending(writes.max(1));
    let live = LiveTable::new(master, "bench", Arc::new(MemCache::new())).with_outbox_layer(outbox);
    for n in 0..writes {
        live.insert_value(&format!("d{n:06}"), &row(n))
            .await
            .unwrap();
    }
    let handle = live.outbox().unwrap().clone();
    switch.0.store(false, Ordering::SeqCst);
    let started = Instant::now();
    handle.retry_now();
    handle.flush().await;
    let drained = started.elapsed();
    let stats = handle.stats();
    assert_eq!(stats.applied as usize, writes);

    let (ack, direct) = (median(ack), median(direct));
    println!("| figure | median / rate |");
    println!("|---|---:|");
    println!("| outbox: local acknowledgement of an insert (synced redb commit), master unreachable | {} |", us(ack));
    println!(
        "| direct insert into a local redb master (vantage-redb, no LiveTable) | {} |",
        us(direct)
    );
    println!(
        "| local acknowledgement / direct redb insert | {:.2} |",
        ack.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "| drain rate into a local SQLite master ({writes} inserts, one at a time) | {:.0} writes/s |",
        writes as f64 / drained.as_secs_f64()
    );
    println!(
        "| for scale: direct inserts into the same SQLite master, one at a time | {:.0} writes/s (median {}) |",
        1.0 / sqlite_direct.as_secs_f64(),
        us(sqlite_direct)
    );
}
