//! The SurrealDB master: a `vantage-surrealdb` table in a database of its
//! own on the test server, seeded with the bakery data, with bare record keys
//! (see `surreal_keys.rs`).
//!
//! The server is `VANTAGE_LIVE_SURREAL_URL` (default
//! `ws://root:root@127.0.0.1:8000`; `.ci/surreal.sh start` runs one). A test
//! that needs it calls [`require_surreal!`]: when the server is unreachable
//! the test prints why and returns, except under `CI=true`, where it fails.
//!
//! Every master gets a fresh database `vlive_<entity>_<unix secs>_<random>`
//! in the namespace `vlive_test`, so tests run in parallel and re-run on a
//! used server; databases of this form older than an hour are removed the
//! first time a test process makes one.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::Value as Cbor;
use surreal_client::SurrealConnection;
use vantage_expressions::{ExprDataSource, Expression};
use vantage_surrealdb::surrealdb::SurrealDB;
use vantage_surrealdb::AnySurrealType;
use vantage_table::any::AnyTable;
use vantage_table::sorting::OrderBy;
use vantage_table::table::Table;

use super::bakery::{Entity, Model};
use super::masters::{seed, with_columns, Master};
use super::postgres::{in_ci, unique_name};
use super::surreal_keys::bare_keys;

/// The namespace every test database lives in.
pub const NAMESPACE: &str = "vlive_test";

/// Where the test server is: `ws://user:password@host:port`.
pub fn surreal_url() -> String {
    std::env::var("VANTAGE_LIVE_SURREAL_URL")
        .unwrap_or_else(|_| "ws://root:root@127.0.0.1:8000".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// The server's URL without its password, for messages.
pub fn surreal_url_redacted() -> String {
    let url = surreal_url();
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

/// `ns/db` on the test server, as a URL with credentials.
pub fn surreal_db_url(namespace: &str, database: &str) -> String {
    format!("{}/{namespace}/{database}", surreal_url())
}

/// The test server's `host:port`, resolved.
pub fn surreal_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = surreal_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/')
        .next()
        .map(|place| match place.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => place.to_string(),
            _ => format!("{place}:80"),
        })
        .and_then(|place| place.to_socket_addrs().ok()?.next())
        .unwrap_or_else(|| panic!("no host:port in {}", surreal_url_redacted()))
}

/// [`surreal_db_url`] with the server's `host:port` replaced by `addr` (a
/// proxy in front of it).
pub fn surreal_db_url_via(addr: std::net::SocketAddr, namespace: &str, database: &str) -> String {
    let url = surreal_url();
    let (scheme, rest) = url.split_once("://").expect("a scheme");
    let userinfo = rest
        .rsplit_once('@')
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    format!("{scheme}://{userinfo}{addr}/{namespace}/{database}")
}

/// A new connection to `namespace`/`database` (within 10 seconds).
pub async fn connect(namespace: &str, database: &str) -> Result<SurrealDB, String> {
    let connection =
        SurrealConnection::dsn(surreal_db_url(namespace, database)).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), connection.connect()).await {
        Ok(Ok(client)) => Ok(SurrealDB::new(client)),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connect timed out after 10 s".to_string()),
    }
}

/// Can we connect and sign in? `Err` says why not.
pub async fn surreal_reachable() -> Result<(), String> {
    connect(NAMESPACE, "vlive_probe").await.map(drop)
}

/// Whether SurrealDB is there. If not: prints `skipping: ...` and returns
/// `false`, or panics under `CI=true`.
pub async fn surreal_available(test: &str) -> bool {
    match surreal_reachable().await {
        Ok(()) => true,
        Err(reason) if in_ci() => panic!(
            "{test}: SurrealDB unreachable at {} ({reason}); CI=true requires it (start it with .ci/surreal.sh start)",
            surreal_url_redacted()
        ),
        Err(reason) => {
            eprintln!(
                "skipping {test}: SurrealDB unreachable at {} ({reason})",
                surreal_url_redacted()
            );
            false
        }
    }
}

/// Return from the calling test (with a printed reason) when SurrealDB is
/// unreachable; fail under `CI=true`.
#[macro_export]
macro_rules! require_surreal {
    () => {
        fn here() {}
        let test = std::any::type_name_of_val(&here)
            .trim_end_matches("::here")
            .replace("::{{closure}}", "");
        if !common::surreal::surreal_available(&test).await {
            return;
        }
    };
}

/// Run one SurrealQL statement (no parameters) and return its result.
pub async fn query(db: &SurrealDB, surql: &str) -> Cbor {
    let expr: Expression<AnySurrealType> = Expression::new(surql, vec![]);
    db.execute(&expr)
        .await
        .unwrap_or_else(|e| panic!("{surql}: {e}"))
        .into_value()
}

/// The database a SurrealDB master lives in.
#[derive(Clone)]
pub struct SurrealBase {
    /// Always [`NAMESPACE`].
    pub namespace: String,
    /// Unique to this master.
    pub database: String,
}

impl SurrealBase {
    /// The database's URL, with credentials (for `SurrealLiveStream`).
    pub fn url(&self) -> String {
        surreal_db_url(&self.namespace, &self.database)
    }

    /// The database's URL through a proxy at `addr`.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        surreal_db_url_via(addr, &self.namespace, &self.database)
    }

    /// A new connection of its own (a second client beside the master's).
    pub async fn connect(&self) -> SurrealDB {
        connect(&self.namespace, &self.database)
            .await
            .unwrap_or_else(|e| panic!("connect to SurrealDB: {e}"))
    }

    /// Run one SurrealQL statement on a new connection.
    pub async fn query(&self, surql: &str) -> Cbor {
        query(&self.connect().await, surql).await
    }

    /// The live queries registered on `table` (`INFO FOR TABLE ... lives`).
    pub async fn live_queries(&self, table: &str) -> usize {
        let info = self.query(&format!("INFO FOR TABLE {table}")).await;
        let Cbor::Map(info) = info else {
            panic!("INFO FOR TABLE answered {info:?}")
        };
        info.iter()
            .find(|(k, _)| matches!(k, Cbor::Text(t) if t == "lives"))
            .map(|(_, v)| match v {
                Cbor::Map(lives) => lives.len(),
                other => panic!("lives is {other:?}"),
            })
            .unwrap_or(0)
    }
}

/// Remove `vlive_*` databases made by runs more than an hour ago (once per
/// process; best effort).
async fn sweep_stale_databases(db: &SurrealDB) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_err() {
        return;
    }
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_sub(3600);
    let expr: Expression<AnySurrealType> = Expression::new("INFO FOR NS", vec![]);
    let Ok(info) = db.execute(&expr).await else {
        return;
    };
    let Cbor::Map(info) = info.into_value() else {
        return;
    };
    let Some(Cbor::Map(databases)) = info
        .into_iter()
        .find(|(k, _)| matches!(k, Cbor::Text(t) if t == "databases"))
        .map(|(_, v)| v)
    else {
        return;
    };
    for (name, _) in databases {
        let Cbor::Text(name) = name else { continue };
        let parts: Vec<&str> = name.rsplitn(3, '_').collect();
        let Some(secs) = parts.get(1).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if name.starts_with("vlive_") && secs < cutoff {
            let remove: Expression<AnySurrealType> =
                Expression::new(format!("REMOVE DATABASE IF EXISTS `{name}`"), vec![]);
            let _ = db.execute(&remove).await;
        }
    }
}

/// A fresh, empty database on the test server.
pub async fn fresh_database(tag: &str) -> SurrealBase {
    let admin = connect(NAMESPACE, "vlive_probe")
        .await
        .unwrap_or_else(|e| panic!("connect to SurrealDB at {}: {e}", surreal_url_redacted()));
    sweep_stale_databases(&admin).await;
    SurrealBase {
        namespace: NAMESPACE.to_string(),
        database: unique_name(tag),
    }
}

/// `entity`'s table on `db`, ordered by id, with bare record keys.
pub fn surreal_table(db: SurrealDB, entity: &Entity) -> AnyTable {
    let id: Expression<AnySurrealType> = Expression::new("id", vec![]);
    let table = with_columns(Table::new(entity.table.clone(), db), entity)
        .with_order(OrderBy::ascending(id));
    bare_keys(AnyTable::from_table(table))
}

/// A `vantage-surrealdb` master for the named bakery entity, ordered by id,
/// in a database of its own. Panics if the server is unreachable: check with
/// [`require_surreal!`] or [`surreal_available`] first.
pub async fn surreal_master(entity_name: &str) -> Master {
    let model = Model::load();
    let entity = model.entity(entity_name);
    let base = fresh_database(entity_name).await;
    let table = surreal_table(base.connect().await, entity);
    seed(&table, entity).await;
    Master {
        kind: "surrealdb",
        table,
        sqlite: None,
        dir: tempfile::tempdir().expect("temp dir"),
        postgres: None,
        surreal: Some(base),
    }
}
