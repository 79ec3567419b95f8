//! The PostgreSQL master: a `vantage-sql` `PostgresDB` table in a schema of
//! its own, seeded with the bakery data.
//!
//! The server is `VANTAGE_LIVE_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). A test that needs it calls
//! [`require_postgres!`]: when the server is unreachable the test prints why
//! and returns, except under `CI=true`, where it fails.
//!
//! Every master gets a fresh schema `vlive_<entity>_<unix secs>_<random>`, so
//! tests run in parallel and re-run on a dirty database; schemas of this form
//! older than an hour are dropped the first time a test process makes one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use vantage_sql::condition::PostgresCondition;
use vantage_sql::postgres::PostgresDB;
use vantage_sql::primitives::identifier::ident;
use vantage_table::any::AnyTable;
use vantage_table::sorting::OrderBy;
use vantage_table::table::Table;

use super::bakery::Model;
use super::masters::{create_table_sql, embedded_masters, seed, with_columns, Master};

/// Where the test server is.
pub fn pg_url() -> String {
    std::env::var("VANTAGE_LIVE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The URL without its password, for messages.
pub fn pg_url_redacted() -> String {
    let url = pg_url();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url,
            }
        }
        _ => url,
    }
}

/// Whether we run under CI, where an unreachable server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Can we connect (within 5 seconds)? `Err` says why not.
pub async fn pg_reachable() -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&pg_url())).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connect timed out after 5 s".to_string()),
    }
}

/// Whether PostgreSQL is there. If not: prints `skipping: ...` and returns
/// `false`, or panics under `CI=true`.
pub async fn pg_available(test: &str) -> bool {
    match pg_reachable().await {
        Ok(()) => true,
        Err(reason) if in_ci() => panic!(
            "{test}: PostgreSQL unreachable at {} ({reason}); CI=true requires it (start it with .ci/run)",
            pg_url_redacted()
        ),
        Err(reason) => {
            eprintln!(
                "skipping {test}: PostgreSQL unreachable at {} ({reason})",
                pg_url_redacted()
            );
            false
        }
    }
}

/// Return from the calling test (with a printed reason) when PostgreSQL is
/// unreachable; fail under `CI=true`.
#[macro_export]
macro_rules! require_postgres {
    () => {
        fn here() {}
        let test = std::any::type_name_of_val(&here)
            .trim_end_matches("::here")
            .replace("::{{closure}}", "");
        if !common::postgres::pg_available(&test).await {
            return;
        }
    };
}

/// The schema a PostgreSQL master lives in.
#[derive(Clone)]
pub struct PgSchema {
    /// The schema's name (unquoted; plain lowercase text).
    pub name: String,
    /// A URL whose connections have the schema as their search path.
    pub url: String,
    /// A pool on `url`, for plain SQL beside the master.
    pub pool: PgPool,
}

impl PgSchema {
    /// `"schema"."table"`.
    pub fn qualified(&self, table: &str) -> String {
        format!("\"{}\".\"{}\"", self.name, table)
    }

    /// Run one statement of plain SQL (no parameters).
    pub async fn exec(&self, sql: &str) -> u64 {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }
}

/// A name no other test, run or process uses: `vlive_<tag>_<secs>_<random>`.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mix = (now.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("vlive_{tag}_{}_{:08x}", now.as_secs(), mix as u32)
}

/// `url` with `search_path` set to `schema` on every connection.
fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Drop `vlive_*` schemas left by runs more than an hour ago (once per
/// process; best effort).
async fn sweep_stale_schemas(pool: &PgPool) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_err() {
        return;
    }
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_sub(3600);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'vlive\\_%'")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    for name in names {
        let parts: Vec<&str> = name.rsplitn(3, '_').collect();
        let Some(secs) = parts.get(1).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if secs < cutoff {
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(pool)
                .await;
        }
    }
}

/// A fresh, empty schema on the test server.
pub async fn fresh_schema(tag: &str) -> PgSchema {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg_url())
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL at {}: {e}", pg_url_redacted()));
    sweep_stale_schemas(&admin).await;
    let name = unique_name(tag);
    sqlx::raw_sql(&format!("CREATE SCHEMA \"{name}\""))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let url = with_search_path(&pg_url(), &name);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connect to the schema");
    PgSchema { name, url, pool }
}

/// A `vantage-sql` PostgreSQL master for the named bakery entity, ordered by
/// id, in a schema of its own. Panics if the server is unreachable: check
/// with [`require_postgres!`] or [`pg_available`] first.
pub async fn postgres_master(entity_name: &str) -> Master {
    let model = Model::load();
    let entity = model.entity(entity_name);
    let schema = fresh_schema(entity_name).await;
    let db = PostgresDB::connect(&schema.url)
        .await
        .expect("open the PostgreSQL master");
    sqlx::raw_sql(&create_table_sql(entity, true))
        .execute(db.pool())
        .await
        .expect("create the PostgreSQL table");
    let table = with_columns(Table::new(entity.table.clone(), db), entity).with_order(
        OrderBy::ascending(PostgresCondition::from(ident(&entity.id))),
    );
    let table = AnyTable::from_table(table);
    seed(&table, entity).await;
    Master {
        kind: "postgres",
        table,
        sqlite: None,
        dir: tempfile::tempdir().expect("temp dir"),
        postgres: Some(schema),
        surreal: None,
    }
}

/// Every master for the named entity: the embedded ones, and PostgreSQL and
/// SurrealDB when they are reachable (each skipped with a printed reason when
/// it is not; a failure under `CI=true`).
pub async fn all_masters(entity_name: &str) -> Vec<Master> {
    let mut masters = embedded_masters(entity_name).await;
    if pg_available(&format!("the postgres master of {entity_name}")).await {
        masters.push(postgres_master(entity_name).await);
    }
    if super::surreal::surreal_available(&format!("the surrealdb master of {entity_name}")).await {
        masters.push(super::surreal::surreal_master(entity_name).await);
    }
    masters
}
