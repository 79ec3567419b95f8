//! Real masters, seeded with the bakery model: a `vantage-redb` table in a
//! temp file and a `vantage-sql` SQLite table in a temp file. The PostgreSQL
//! master is in `postgres.rs`, the SurrealDB master in `surreal.rs`.

use tempfile::TempDir;
use vantage_dataset::prelude::WritableValueSet;
use vantage_redb::Redb;
use vantage_sql::condition::SqliteCondition;
use vantage_sql::primitives::identifier::ident;
use vantage_sql::sqlite::SqliteDB;
use vantage_table::any::AnyTable;
use vantage_table::sorting::OrderBy;
use vantage_table::table::Table;

pub use super::bakery::with_columns;
use super::bakery::{Entity, Model};

/// A seeded master and what keeps it alive.
pub struct Master {
    /// Which backend: `redb`, `sqlite`, `postgres` or `surrealdb`.
    pub kind: &'static str,
    /// The master table.
    pub table: AnyTable,
    /// The SQLite handle, to break the connection in tests.
    pub sqlite: Option<SqliteDB>,
    /// The folder holding the database file (empty for the servers).
    pub dir: TempDir,
    /// The PostgreSQL schema the table lives in, for plain SQL beside it.
    pub postgres: Option<super::postgres::PgSchema>,
    /// The SurrealDB database the table lives in, for a second connection.
    pub surreal: Option<super::surreal::SurrealBase>,
}

/// Insert `entity`'s seed rows through the table's own API.
pub async fn seed(table: &AnyTable, entity: &Entity) {
    for (id, record) in entity.seed() {
        table
            .insert_value(&id, &record)
            .await
            .unwrap_or_else(|e| panic!("seeding {} row {id}: {e}", entity.table));
    }
}

/// A `vantage-redb` master for the named bakery entity (rows in id order).
pub async fn redb_master(entity_name: &str) -> Master {
    let model = Model::load();
    let entity = model.entity(entity_name);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Redb::create(dir.path().join("master.redb")).expect("create redb master");
    let table = AnyTable::from_table(with_columns(Table::new(entity.table.clone(), db), entity));
    seed(&table, entity).await;
    Master {
        kind: "redb",
        table,
        sqlite: None,
        dir,
        postgres: None,
        surreal: None,
    }
}

/// A `vantage-sql` SQLite master for the named bakery entity, ordered by id.
pub async fn sqlite_master(entity_name: &str) -> Master {
    let model = Model::load();
    let entity = model.entity(entity_name);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("master.sqlite").display()
    );
    let db = SqliteDB::connect(&url).await.expect("open sqlite master");
    sqlx::query(&create_table_sql(entity, false))
        .execute(db.pool())
        .await
        .expect("create sqlite table");
    let table = with_columns(Table::new(entity.table.clone(), db.clone()), entity)
        .with_order(OrderBy::ascending(SqliteCondition::from(ident(&entity.id))));
    let table = AnyTable::from_table(table);
    seed(&table, entity).await;
    Master {
        kind: "sqlite",
        table,
        sqlite: Some(db),
        dir,
        postgres: None,
        surreal: None,
    }
}

/// Both embedded masters for the named entity.
pub async fn embedded_masters(entity_name: &str) -> Vec<Master> {
    vec![
        redb_master(entity_name).await,
        sqlite_master(entity_name).await,
    ]
}

/// `CREATE TABLE` for `entity`.
pub fn create_table_sql(entity: &Entity, postgres: bool) -> String {
    entity.create_table_sql(postgres, false)
}

/// A `vantage-sql` SQLite master for `entity_name` in the file at `path`,
/// which several processes can open at once: `create` makes the table and
/// seeds it (do it once, in the parent), else the table must be there.
pub async fn sqlite_master_at(path: &std::path::Path, entity_name: &str, create: bool) -> AnyTable {
    sqlite_at(path, entity_name, create).await.0
}

/// The SQLite `product`-style table of `entity_name` in an existing file
/// (made by [`sqlite_master`]), on a new connection: another process's view
/// of the same master.
pub async fn sqlite_table_at(entity_name: &str, path: &std::path::Path) -> (AnyTable, SqliteDB) {
    sqlite_at(path, entity_name, false).await
}

async fn sqlite_at(
    path: &std::path::Path,
    entity_name: &str,
    create: bool,
) -> (AnyTable, SqliteDB) {
    let model = Model::load();
    let entity = model.entity(entity_name);
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = SqliteDB::connect(&url).await.expect("open sqlite master");
    if create {
        sqlx::query(&create_table_sql(entity, false))
            .execute(db.pool())
            .await
            .expect("create sqlite table");
    }
    let table = with_columns(Table::new(entity.table.clone(), db.clone()), entity)
        .with_order(OrderBy::ascending(SqliteCondition::from(ident(&entity.id))));
    let table = AnyTable::from_table(table);
    if create {
        seed(&table, entity).await;
    }
    (table, db)
}
