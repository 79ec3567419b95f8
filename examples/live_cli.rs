//! live_cli: the bakery command line, cached.
//!
//! ```text
//! cargo run --example live_cli -- [FLAGS] <entity> <commands>...
//! ```
//!
//! Entities come from `examples/bakery/bakery.yaml` (bakery, client, product,
//! order). The master is a SQLite file created and seeded on first run
//! (`--db FILE`, default `target/live_cli/bakery.sqlite`), PostgreSQL with
//! `--postgres URL` (tables created and seeded if empty), or SurrealDB with
//! `--surreal ws://user:password@host:port/namespace/database` (tables
//! defined and seeded if empty; each LiveTable then also listens to the
//! table's `LIVE SELECT`, so changes made by others drop its cache). Every
//! entity's table is wrapped in a `LiveTable`; the cache is in memory by default,
//! `--cache FOLDER` keeps it on disk between runs (`RedbCache`), and
//! `--no-cache` bypasses it (`NoCache`, the parity check), and `--redis URL`
//! shares it with every other process pointed at the same Redis
//! (`RedisCache`; `--redis-prefix` picks the key prefix, default `vlive`):
//! two runs in a row share hits, and one run's `add` is seen by the next
//! one's `list`. `--debug` prints
//! the traced cache and queue activity to stderr (`RUST_LOG` overrides the
//! default `vantage_live=debug`; `vantage_live=trace` adds row counts and
//! record bodies).
//!
//! Commands run left to right:
//!
//! - `field=value`: keep rows whose column equals the value (parsed by the
//!   column's type); a conditioned view is cached under its own key;
//! - `page=N`, `ipp=N`: show page N at ipp rows per page (each its own slot);
//! - `list`: print the rows, `Found N records` and the time the read took;
//! - `get <id>`: print one row as JSON;
//! - `add <id> '<json>'`: insert a row (then the next `list` shows it);
//! - `set <id> '<json>'`: patch a row: change the fields the JSON names
//!   (`WritableValueSet::patch_value`), leave the others;
//! - `delete <id>`: delete a row;
//! - `ref <relation>`: switch to the related entity's rows (as the model's
//!   references say); later commands apply to it.
//!
//! Every command is checked before any runs, so a bad one writes nothing.
//!
//! Flags that tune every LiveTable the CLI builds (each entity's, each one
//! `ref` reaches, and the ones that drain an outbox), to show the library's
//! features from the command line:
//!
//! - `--max-age SECS` (`LiveTable::with_max_age`): cached slots older than
//!   SECS seconds (fractions allowed) are misses; without it a slot lives
//!   until a write drops it;
//! - `--stale-while-revalidate SECS` (with `--max-age`;
//!   `LiveTable::with_stale_while_revalidate`): serve a slot up to SECS past
//!   its max age at once and refresh it in the background (`--debug` shows
//!   `outcome="stale"` and `outcome="refresh"`);
//! - `--row-invalidation` (`LiveTable::with_row_invalidation`): a write
//!   that names a row (`set`, `add`, `delete`) drops only the cached slots
//!   of the view it went through that the row can change: after a `set`, the
//!   pages that do not hold the row stay cached. The entity's other views
//!   (conditioned, reached by `ref`) are still dropped whole;
//! - `--master-ipp N` (`LiveTable::with_master_ipp`): the master is read in
//!   pages of N rows; a page of another size (`ipp=M page=P`) is assembled
//!   from (or cut out of) those master pages, each cached in its own slot.
//!
//! `--outbox FOLDER` makes writes work offline: each entity's writes go to a
//! durable outbox in `FOLDER/<entity>` (`LiveTable::with_outbox`), `add`,
//! `set` and `delete` answer once the write is on local disk and say that it
//! is pending, and the outbox is drained to the master in the background. If
//! the master cannot be reached at start, the CLI still runs: writes wait in
//! the outbox, and reads answer from the cache or fail. Every run starts by
//! applying what earlier runs left pending, printing each write applied (or
//! rejected), and ends by trying once more, printing what is still pending.

#[path = "../tests/common/bakery.rs"]
#[allow(dead_code)]
mod bakery;
#[path = "../tests/common/hooked.rs"]
#[allow(dead_code)]
mod hooked;
#[path = "../tests/common/surreal_keys.rs"]
#[allow(dead_code)]
mod surreal_keys;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bakery::{with_columns, ColumnType, Entity, Model};
use ciborium::Value as Cbor;
use clap::Parser;
use indexmap::IndexMap;
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::outbox::{FlushOutcome, OutboxLayer, OutboxOp, Settled, Verdict};
use vantage_live::CacheGroup;
use vantage_live::{Cache, LiveTable, MemCache, NoCache, RedbCache, RedisCache, SurrealLiveStream};
use vantage_sql::condition::{PostgresCondition, SqliteCondition};
use vantage_sql::postgres::operation::PostgresOperation;
use vantage_sql::postgres::{AnyPostgresType, PostgresDB};
use vantage_sql::primitives::identifier::ident;
use vantage_sql::sqlite::operation::SqliteOperation;
use vantage_sql::sqlite::{AnySqliteType, SqliteDB};
use vantage_surrealdb::surrealdb::SurrealDB;
use vantage_surrealdb::AnySurrealType;
use vantage_table::any::AnyTable;
use vantage_table::column::core::Column;
use vantage_table::pagination::Pagination;
use vantage_table::sorting::OrderBy;
use vantage_table::table::Table;
use vantage_table::traits::table_like::TableLike;
use vantage_table::traits::table_source::TableSource;
use vantage_types::Record;

/// The bakery command line, with a cache between the tables and the commands.
#[derive(Parser, Debug)]
#[command(name = "live_cli", version, about)]
struct Cli {
    /// SQLite file used as the master (created and seeded on first run).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["postgres", "surreal"])]
    db: Option<PathBuf>,
    /// Use a PostgreSQL master at URL instead (tables created and seeded if empty).
    #[arg(long, value_name = "URL", conflicts_with = "surreal")]
    postgres: Option<String>,
    /// Use a SurrealDB master instead, at ws://USER:PASSWORD@HOST:PORT/NAMESPACE/DATABASE
    /// (tables defined and seeded if empty); its LIVE queries keep the cache fresh.
    #[arg(long, value_name = "URL")]
    surreal: Option<String>,
    /// Keep the cache on disk in FOLDER (RedbCache); survives between runs.
    #[arg(long, value_name = "FOLDER", conflicts_with = "no_cache")]
    cache: Option<PathBuf>,
    /// Bypass the cache (NoCache): every read goes to the master.
    #[arg(long)]
    no_cache: bool,
    /// Share the cache in Redis at URL (RedisCache) with every process
    /// pointed at it, e.g. redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL", conflicts_with_all = ["cache", "no_cache"])]
    redis: Option<String>,
    /// The Redis key prefix (with --redis).
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "vlive",
        requires = "redis"
    )]
    redis_prefix: String,
    /// Print traced cache and queue activity to stderr.
    #[arg(long)]
    debug: bool,
    /// Keep writes in a durable outbox in FOLDER (one per entity) and apply
    /// them to the master in the background: writes work while the master
    /// is unreachable.
    #[arg(long, value_name = "FOLDER")]
    outbox: Option<PathBuf>,
    /// Treat cached slots older than SECS seconds (fractions allowed) as
    /// misses (LiveTable::with_max_age). Without it, a slot lives until a
    /// write drops it.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_hyphen_values = true)]
    max_age: Option<Duration>,
    /// Serve slots up to SECS seconds past --max-age at once and refresh
    /// them in the background (LiveTable::with_stale_while_revalidate).
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_seconds,
        allow_hyphen_values = true,
        requires = "max_age"
    )]
    stale_while_revalidate: Option<Duration>,
    /// A write that names a row (set, add, delete) drops only the cached
    /// slots that row can change (LiveTable::with_row_invalidation): after
    /// a set, pages that do not hold the row stay cached.
    #[arg(long)]
    row_invalidation: bool,
    /// Read the master in pages of N rows (LiveTable::with_master_ipp): a
    /// page of another size is assembled from (or cut out of) master pages,
    /// each cached in its own slot.
    #[arg(long, value_name = "N", value_parser = parse_master_ipp, allow_hyphen_values = true)]
    master_ipp: Option<i64>,
    /// The entity to start from: bakery, client, product or order.
    entity: String,
    /// Commands: field=value, page=N, ipp=N, list, get <id>, add <id> <json>,
    /// set <id> <json>, delete <id>, ref <relation>.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    commands: Vec<String>,
}

/// A checked command.
#[derive(Debug)]
enum Command {
    Eq { field: String, value: Cbor },
    Page(i64),
    Ipp(i64),
    List,
    Get(String),
    Add(String, Record<Cbor>),
    Set(String, Record<Cbor>),
    Delete(String),
    Ref(String),
}

type CliResult<T> = Result<T, String>;

/// A `--max-age` or `--stale-while-revalidate` value: seconds, fractions
/// allowed, finite and not negative.
fn parse_seconds(text: &str) -> CliResult<Duration> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !secs.is_finite() {
        return Err(format!("'{text}' is not a finite number of seconds"));
    }
    if secs < 0.0 {
        return Err(format!("'{text}' is negative; give 0 or more seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' seconds is too long"))
}

/// A `--master-ipp` value: a whole number of at least 1.
fn parse_master_ipp(text: &str) -> CliResult<i64> {
    parse_number(text, "--master-ipp")
}

/// How this run builds its LiveTables: all over one cache, each tuned by
/// the flags --max-age, --stale-while-revalidate, --row-invalidation and
/// --master-ipp. Every LiveTable the CLI makes comes from [`Tables::live`].
struct Tables {
    cache: Arc<dyn Cache>,
    max_age: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    row_invalidation: bool,
    master_ipp: Option<i64>,
}

impl Tables {
    fn new(cache: Arc<dyn Cache>, cli: &Cli) -> Self {
        Self {
            cache,
            max_age: cli.max_age,
            stale_while_revalidate: cli.stale_while_revalidate,
            row_invalidation: cli.row_invalidation,
            master_ipp: cli.master_ipp,
        }
    }

    /// A LiveTable over `any`, cached under `cache_key`, with the flags
    /// applied.
    fn live(&self, any: AnyTable, cache_key: String) -> LiveTable {
        let mut live = LiveTable::new(any, cache_key, self.cache.clone());
        if let Some(max_age) = self.max_age {
            live = live.with_max_age(max_age);
        }
        if let Some(window) = self.stale_while_revalidate {
            live = live.with_stale_while_revalidate(window);
        }
        if self.row_invalidation {
            live = live.with_row_invalidation();
        }
        if let Some(ipp) = self.master_ipp {
            live = live.with_master_ipp(ipp);
        }
        live
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.debug {
        // `vantage_live` also matches `vantage_live_layers`: EnvFilter
        // matches targets by prefix.
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "vantage_live=debug".to_string());
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> CliResult<()> {
    let model = load_model()?;
    let commands = parse_commands(&model, &cli.entity, &cli.commands)?;

    let connected = match (&cli.postgres, &cli.surreal) {
        (Some(url), _) => Master::postgres(url).await,
        (None, Some(url)) => Master::surreal(url).await,
        (None, None) => {
            let path = cli.db.clone().unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/live_cli/bakery.sqlite")
            });
            Master::sqlite(path).await
        }
    };
    let master = match (connected, &cli.outbox) {
        (Ok(master), _) => {
            master.prepare(&model).await?;
            master
        }
        // With an outbox, an unreachable master is not the end: writes wait.
        (Err(why), Some(_)) => {
            println!("The master is unreachable ({why}); writes wait in the outbox");
            Master::offline(why).await?
        }
        (Err(why), None) => return Err(why),
    };

    let cache: Arc<dyn Cache> = match (&cli.cache, cli.no_cache, &cli.redis) {
        (_, true, _) => Arc::new(NoCache),
        (Some(folder), false, _) => Arc::new(RedbCache::open(folder).map_err(|e| e.to_string())?),
        (None, false, Some(url)) => Arc::new(
            RedisCache::builder(url)
                .key_prefix(cli.redis_prefix.clone())
                .connect()
                .await
                .map_err(|e| e.to_string())?,
        ),
        (None, false, None) => Arc::new(MemCache::new()),
    };
    let tables = Tables::new(cache, &cli);

    let mut outboxes = Outboxes::new(cli.outbox.clone());
    // Apply what earlier runs left in the outboxes.
    outboxes.drain_leftovers(&model, &master, &tables).await?;

    let mut view = ViewState::new(&cli.entity);
    let mut live: Option<LiveTable> = None;
    let result = run_commands(
        &model,
        &master,
        &tables,
        &mut outboxes,
        &mut view,
        &mut live,
        commands,
    )
    .await;
    drop(live);
    outboxes.drain_all("", true).await;
    result
}

async fn run_commands(
    model: &Model,
    master: &Master,
    tables: &Tables,
    outboxes: &mut Outboxes,
    view: &mut ViewState,
    live: &mut Option<LiveTable>,
    commands: Vec<Command>,
) -> CliResult<()> {
    for command in commands {
        match command {
            Command::Eq { field, value } => {
                view.conditions.push((field, value));
                *live = None;
            }
            Command::Page(page) => view.page = Some(page),
            Command::Ipp(ipp) => view.ipp = Some(ipp),
            Command::Ref(relation) => {
                let table = view.live(model, master, tables, outboxes, live).await?;
                *view = view.follow(model, &relation, &table).await?;
                *live = None;
            }
            Command::List => {
                let table = view.live(model, master, tables, outboxes, live).await?;
                let started = Instant::now();
                let rows = table.list_values().await.map_err(|e| e.to_string())?;
                let took = started.elapsed();
                print!("{}", render_table(view.entity(model), &rows));
                let noun = if rows.len() == 1 { "record" } else { "records" };
                println!("Found {} {noun} in {}", rows.len(), show_duration(took));
            }
            Command::Get(id) => {
                let table = view.live(model, master, tables, outboxes, live).await?;
                let started = Instant::now();
                let row = table.get_value(&id).await.map_err(|e| e.to_string())?;
                let took = started.elapsed();
                let entity = view.entity(model);
                match row {
                    Some(record) => {
                        let json = record_to_json(entity, &id, &record);
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&json).unwrap_or_default()
                        );
                        println!("Found 1 record in {}", show_duration(took));
                    }
                    None => return Err(format!("{} has no row with id '{id}'", view.name)),
                }
            }
            Command::Add(id, record) => {
                let table = view.live(model, master, tables, outboxes, live).await?;
                table
                    .insert_value(&id, &record)
                    .await
                    .map_err(|e| format!("could not add {} '{id}': {e}", view.name))?;
                written(tables, view, &table, "Added", &id).await;
            }
            Command::Set(id, record) => {
                let table = view.live(model, master, tables, outboxes, live).await?;
                table
                    .patch_value(&id, &record)
                    .await
                    .map_err(|e| format!("could not update {} '{id}': {e}", view.name))?;
                written(tables, view, &table, "Updated", &id).await;
            }
            Command::Delete(id) => {
                let table = view.live(model, master, tables, outboxes, live).await?;
                table
                    .delete(&id)
                    .await
                    .map_err(|e| format!("could not delete {} '{id}': {e}", view.name))?;
                written(tables, view, &table, "Deleted", &id).await;
            }
        }
    }
    Ok(())
}

/// After a write of row `id` through `table` (the view's LiveTable): drop
/// the entity's cached views, then say what was done (`Added`, `Updated`,
/// `Deleted`), and that it is pending with an outbox.
async fn written(tables: &Tables, view: &ViewState, table: &LiveTable, done: &str, id: &str) {
    invalidate_entity(tables, &view.name, &view.cache_key()).await;
    match table.outbox() {
        Some(outbox) => println!(
            "{done} {} '{id}' locally: pending, {} write(s) wait in the outbox for the master",
            view.name,
            outbox.stats().pending
        ),
        None => println!("{done} {} '{id}'", view.name),
    }
}

fn load_model() -> CliResult<Model> {
    let path = bakery::model_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the entity registry {}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text)
        .map_err(|e| format!("the entity registry {} is invalid: {e}", path.display()))
}

fn known_entities(model: &Model) -> String {
    model
        .entities
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

fn entity_of<'m>(model: &'m Model, name: &str) -> CliResult<&'m Entity> {
    model.entities.get(name).ok_or_else(|| {
        format!(
            "unknown entity '{name}'; known entities: {}",
            known_entities(model)
        )
    })
}

/// The type of `field` in `entity` (the id column is text).
fn column_type(entity: &Entity, name: &str, field: &str) -> CliResult<ColumnType> {
    if field == entity.id {
        return Ok(ColumnType::String);
    }
    entity.columns.get(field).copied().ok_or_else(|| {
        let mut columns = vec![entity.id.clone()];
        columns.extend(entity.columns.keys().cloned());
        format!(
            "{name} has no column '{field}'; columns: {}",
            columns.join(", ")
        )
    })
}

/// Parse `text` as a value of `ty`.
fn parse_value(ty: ColumnType, text: &str, name: &str, field: &str) -> CliResult<Cbor> {
    let bad = |what: &str| format!("'{text}' is not a valid {what} for {name}.{field}");
    Ok(match ty {
        ColumnType::String => Cbor::Text(text.to_string()),
        ColumnType::Int => Cbor::Integer(text.parse::<i64>().map_err(|_| bad("int"))?.into()),
        ColumnType::Float => {
            let f = text.parse::<f64>().map_err(|_| bad("float"))?;
            if !f.is_finite() {
                return Err(bad("float"));
            }
            Cbor::Float(f)
        }
        ColumnType::Bool => match text {
            "true" | "1" | "yes" => Cbor::Bool(true),
            "false" | "0" | "no" => Cbor::Bool(false),
            _ => return Err(bad("bool (true/false)")),
        },
    })
}

/// Convert a JSON value to `ty`'s CBOR value.
fn json_value(
    ty: ColumnType,
    value: &serde_json::Value,
    name: &str,
    field: &str,
) -> CliResult<Cbor> {
    use serde_json::Value as J;
    let bad = || format!("{value} is not a valid {ty:?} for {name}.{field}").to_lowercase();
    Ok(match (ty, value) {
        (_, J::Null) => Cbor::Null,
        (ColumnType::String, J::String(s)) => Cbor::Text(s.clone()),
        (ColumnType::Int, J::Number(n)) => Cbor::Integer(n.as_i64().ok_or_else(bad)?.into()),
        (ColumnType::Float, J::Number(n)) => Cbor::Float(n.as_f64().ok_or_else(bad)?),
        (ColumnType::Bool, J::Bool(b)) => Cbor::Bool(*b),
        _ => return Err(bad()),
    })
}

fn parse_number(text: &str, what: &str) -> CliResult<i64> {
    match text.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{what} must be a whole number of at least 1, not '{text}'"
        )),
    }
}

/// Check every command against the model before running any.
fn parse_commands(model: &Model, entity_name: &str, args: &[String]) -> CliResult<Vec<Command>> {
    let mut name = entity_name.to_string();
    let mut entity = entity_of(model, &name)?;
    let mut out = Vec::new();
    let mut args = args.iter();
    let usage = "expected field=value, page=N, ipp=N, list, get <id>, add <id> <json>, \
                 set <id> <json>, delete <id> or ref <relation>";
    while let Some(arg) = args.next() {
        let mut operand = |verb: &str, what: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("'{verb}' needs {what}"))
        };
        let command = match arg.as_str() {
            "list" => Command::List,
            "get" => Command::Get(operand("get", "an id")?),
            "delete" => Command::Delete(operand("delete", "an id")?),
            "add" => {
                let id = operand("add", "an id and a JSON object")?;
                let json = operand("add", "a JSON object after the id")?;
                Command::Add(id, parse_record(entity, &name, &json, "add")?)
            }
            "set" => {
                let id = operand("set", "an id and a JSON object")?;
                let json = operand("set", "a JSON object after the id")?;
                let record = parse_record(entity, &name, &json, "set")?;
                if record.is_empty() {
                    return Err(
                        "'set' needs at least one field to change, like '{\"price\": 3}'".into(),
                    );
                }
                Command::Set(id, record)
            }
            "ref" => {
                let relation = operand("ref", "a relation name")?;
                let Some(reference) = entity.references.get(&relation) else {
                    let known: Vec<_> = entity.references.keys().cloned().collect();
                    return Err(format!(
                        "{name} has no relation '{relation}'; relations: {}",
                        known.join(", ")
                    ));
                };
                name = reference
                    .one
                    .clone()
                    .or_else(|| reference.many.clone())
                    .ok_or_else(|| format!("relation '{relation}' names no entity"))?;
                entity = entity_of(model, &name)?;
                Command::Ref(relation)
            }
            other => match other.split_once('=') {
                Some(("page", n)) => Command::Page(parse_number(n, "page")?),
                Some(("ipp", n)) => Command::Ipp(parse_number(n, "ipp")?),
                Some((field, value)) => {
                    let ty = column_type(entity, &name, field)?;
                    Command::Eq {
                        field: field.to_string(),
                        value: parse_value(ty, value, &name, field)?,
                    }
                }
                None => return Err(format!("unknown command '{other}'; {usage}")),
            },
        };
        out.push(command);
    }
    if out.is_empty() {
        return Err(format!("no commands given; {usage}"));
    }
    Ok(out)
}

/// The JSON object of `add` or `set` (the `verb`, for errors) as a record
/// of `entity`'s typed columns.
fn parse_record(entity: &Entity, name: &str, json: &str, verb: &str) -> CliResult<Record<Cbor>> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invalid JSON for {verb}: {e}"))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(format!(
            "invalid JSON for {verb}: expected an object like '{{\"name\":\"X\"}}'"
        ));
    };
    let mut record = Record::new();
    for (field, value) in &fields {
        if *field == entity.id {
            return Err(format!(
                "give the id as the argument before the JSON, not as '{field}'"
            ));
        }
        let ty = column_type(entity, name, field)?;
        record.insert(field.clone(), json_value(ty, value, name, field)?);
    }
    Ok(record)
}

/// The rows one command applies to: an entity, its conditions, and (after
/// `ref`) the link to the rows it was reached from.
struct ViewState {
    name: String,
    conditions: Vec<(String, Cbor)>,
    /// `(column, values)`: keep rows whose column is one of the values.
    restriction: Option<(String, Vec<Cbor>)>,
    /// Text describing how this view was reached, for the cache key.
    origin: String,
    page: Option<i64>,
    ipp: Option<i64>,
}

impl ViewState {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            conditions: Vec::new(),
            restriction: None,
            origin: String::new(),
            page: None,
            ipp: None,
        }
    }

    fn entity<'m>(&self, model: &'m Model) -> &'m Entity {
        &model.entities[&self.name]
    }

    /// The cache key: the entity, then `?` and the view's conditions. Every
    /// key of one entity starts with its name, so a write can drop them all.
    fn cache_key(&self) -> String {
        let mut parts: Vec<String> = self
            .conditions
            .iter()
            .map(|(f, v)| format!("{f}={}", show_cbor(v)))
            .collect();
        parts.sort();
        if !self.origin.is_empty() {
            parts.insert(0, format!("@{}", self.origin));
        }
        if parts.is_empty() {
            self.name.clone()
        } else {
            format!("{}?{}", self.name, parts.join("&"))
        }
    }

    fn pagination(&self) -> Option<Pagination> {
        match (self.page, self.ipp) {
            (None, None) => None,
            (page, ipp) => Some(Pagination::new(page.unwrap_or(1), ipp.unwrap_or(10))),
        }
    }

    /// This view's LiveTable, reusing `slot` while the view is unchanged.
    async fn live(
        &self,
        model: &Model,
        master: &Master,
        tables: &Tables,
        outboxes: &mut Outboxes,
        slot: &mut Option<LiveTable>,
    ) -> CliResult<LiveTable> {
        let mut table = match slot.take() {
            Some(t) => t,
            None => {
                let entity = self.entity(model);
                let any = master.table(entity, &self.conditions, self.restriction.as_ref())?;
                let live = tables.live(any, self.cache_key());
                let live = match outboxes.layer(&self.name)? {
                    Some(layer) => live.with_outbox_layer(layer),
                    None => live,
                };
                match master.live_stream(entity)? {
                    Some(stream) => listening(live.with_live_stream(Arc::new(stream))).await,
                    None => live,
                }
            }
        };
        table.set_pagination(self.pagination());
        *slot = Some(table.clone());
        Ok(table)
    }

    /// The view reached through `relation` from this one's rows.
    async fn follow(&self, model: &Model, relation: &str, from: &LiveTable) -> CliResult<Self> {
        let entity = self.entity(model);
        let reference = &entity.references[relation];
        let rows = from.list_values().await.map_err(|e| e.to_string())?;
        let (target, column, values) = match (&reference.one, &reference.many) {
            (Some(target), _) => {
                let mut values: Vec<Cbor> = Vec::new();
                for record in rows.values() {
                    if let Some(v) = record.get(&reference.key) {
                        if !values.contains(v) {
                            values.push(v.clone());
                        }
                    }
                }
                (target.clone(), model.entities[target].id.clone(), values)
            }
            (None, Some(target)) => (
                target.clone(),
                reference.key.clone(),
                rows.keys().map(|id| Cbor::Text(id.clone())).collect(),
            ),
            (None, None) => return Err(format!("relation '{relation}' names no entity")),
        };
        Ok(Self {
            name: target,
            conditions: Vec::new(),
            restriction: Some((column, values)),
            origin: format!("{}>{relation}", self.cache_key()),
            page: None,
            ipp: None,
        })
    }
}

/// `live` once its live query runs (its first event, the "anything may have
/// changed" of a new subscription, has dropped the cache_key), so that it
/// cannot drop slots the commands fill; or once it failed to start (logged
/// with --debug), after which the LiveTable works on without it.
async fn listening(live: LiveTable) -> LiveTable {
    live.start_live_stream();
    if let Some(mut status) = live.live_stream_status() {
        let started = status.wait_for(|s| s.events >= 1 || s.subscriptions >= 2);
        let _ = tokio::time::timeout(Duration::from_secs(15), started).await;
    }
    live
}

/// After a write, drop every cached view of the entity, not only the one the
/// write went through: conditioned views and views reached by `ref` have
/// cache_keys of their own (`name?...`). The group goes through the cache's
/// fence, as the write did, and finds views cached by earlier runs.
///
/// With --row-invalidation, a write through the entity's plain view
/// (`written_through` is `name`) keeps that view's cache_key: its LiveTable
/// has already dropped the slots the row can change, and dropping the rest
/// would undo what the flag shows. The other views are still dropped
/// whole (a conditioned view's key starts with `name?`, as the others do,
/// so a write through one drops them all).
async fn invalidate_entity(tables: &Tables, name: &str, written_through: &str) {
    let views = CacheGroup::new(tables.cache.clone());
    let views = if tables.row_invalidation && written_through == name {
        views
    } else {
        views.with_cache_key(name)
    };
    let views = views.with_cache_keys_starting_with(format!("{name}?"));
    if let Err(e) = views.invalidate().await {
        // The write stands; in this run, the views that failed to drop
        // read the master until a later invalidation succeeds.
        eprintln!("warning: could not drop the cached views of {name}: {e}");
    }
}

/// The master database.
enum Master {
    Sqlite(SqliteDB),
    Postgres(PostgresDB),
    /// The connection, and the URL (with credentials: never shown) its live
    /// streams connect to.
    Surreal(SurrealDB, String),
    /// Unreachable at start (with `--outbox`): tables that know their
    /// columns (from an empty in-memory SQLite schema) and fail every read
    /// and write as a refused connection.
    Offline(SqliteDB, Arc<Unreachable>),
}

/// Every call fails: the master could not be reached.
struct Unreachable {
    why: String,
}

impl hooked::Hooks for Unreachable {
    fn read<'a, T: Send + 'a>(&'a self, _call: hooked::Call<'a, T>) -> hooked::Call<'a, T> {
        Box::pin(async move { Err(self.error()) })
    }

    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _id: Option<&'a str>,
        _call: hooked::Call<'a, T>,
    ) -> hooked::Call<'a, T> {
        Box::pin(async move { Err(self.error()) })
    }
}

impl Unreachable {
    fn error(&self) -> vantage_core::VantageError {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, self.why.clone()).into()
    }
}

impl Master {
    async fn offline(why: String) -> CliResult<Self> {
        let db = SqliteDB::connect("sqlite::memory:")
            .await
            .map_err(|e| format!("cannot prepare offline tables: {e}"))?;
        Ok(Master::Offline(db, Arc::new(Unreachable { why })))
    }

    async fn sqlite(path: PathBuf) -> CliResult<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = SqliteDB::connect(&url)
            .await
            .map_err(|e| format!("cannot open the SQLite master {}: {e}", path.display()))?;
        Ok(Master::Sqlite(db))
    }

    async fn postgres(url: &str) -> CliResult<Self> {
        use sqlx::Connection as _;
        let place = url_place(url);
        let unreachable = |why: String| format!("cannot connect to PostgreSQL at {place}: {why}");
        // One plain connection first: a refused or unknown server fails at
        // once here, where a pool would keep retrying until its timeout.
        let probe = sqlx::postgres::PgConnection::connect(url);
        match tokio::time::timeout(Duration::from_secs(10), probe).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("timed out after 10 s".into())),
        }
        let db = PostgresDB::connect(url)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Master::Postgres(db))
    }

    async fn surreal(url: &str) -> CliResult<Self> {
        // The live stream's URL check: the same form, and errors that never
        // repeat the URL.
        SurrealLiveStream::new(url, "-").map_err(|e| e.to_string())?;
        let place = url_place(url);
        let unreachable = |why: String| format!("cannot connect to SurrealDB at {place}: {why}");
        let connection =
            surreal_client::SurrealConnection::dsn(url).map_err(|e| unreachable(e.to_string()))?;
        let client = match tokio::time::timeout(Duration::from_secs(10), connection.connect()).await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("timed out after 10 s".into())),
        };
        Ok(Master::Surreal(SurrealDB::new(client), url.to_string()))
    }

    /// The live stream of `entity`'s table (SurrealDB only).
    fn live_stream(&self, entity: &Entity) -> CliResult<Option<SurrealLiveStream>> {
        match self {
            Master::Surreal(_, url) => SurrealLiveStream::new(url, entity.table.clone())
                .map(Some)
                .map_err(|e| e.to_string()),
            _ => Ok(None),
        }
    }

    /// Create missing tables and seed empty ones.
    async fn prepare(&self, model: &Model) -> CliResult<()> {
        for (name, entity) in &model.entities {
            let ddl = entity.create_table_sql(matches!(self, Master::Postgres(_)), true);
            let created = match self {
                Master::Sqlite(db) => sqlx::query(&ddl)
                    .execute(db.pool())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Master::Postgres(db) => sqlx::query(&ddl)
                    .execute(db.pool())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Master::Surreal(db, _) => define_surreal_table(db, &entity.table).await,
                Master::Offline(..) => return Ok(()),
            };
            created.map_err(|e| format!("cannot create table {}: {e}", entity.table))?;
            let table = self.table(entity, &[], None)?;
            let count = table
                .get_count()
                .await
                .map_err(|e| format!("cannot count {name}: {e}"))?;
            if count == 0 {
                for (id, record) in entity.seed() {
                    table
                        .insert_value(&id, &record)
                        .await
                        .map_err(|e| format!("cannot seed {name} '{id}': {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// The entity's table with the view's conditions, as an `AnyTable`.
    fn table(
        &self,
        entity: &Entity,
        conditions: &[(String, Cbor)],
        restriction: Option<&(String, Vec<Cbor>)>,
    ) -> CliResult<AnyTable> {
        match self {
            Master::Offline(db, unreachable) => {
                let table = with_columns(Table::new(entity.table.clone(), db.clone()), entity);
                Ok(hooked::Hooked::wrap(
                    AnyTable::from_table(table),
                    unreachable.clone(),
                ))
            }
            Master::Sqlite(db) => {
                let mut table = with_columns(Table::new(entity.table.clone(), db.clone()), entity)
                    .with_order(OrderBy::ascending(SqliteCondition::from(ident(&entity.id))));
                for (field, value) in conditions {
                    let cond = db
                        .eq_value_condition(field, AnySqliteType::from(value.clone()))
                        .map_err(|e| e.to_string())?;
                    table = table.with_condition(cond);
                }
                if let Some((column, values)) = restriction {
                    let column: Column<AnySqliteType> = Column::new(column);
                    let values: Vec<AnySqliteType> =
                        values.iter().cloned().map(AnySqliteType::from).collect();
                    table = table.with_condition(in_or_nothing::<SqliteCondition>(
                        values.is_empty(),
                        || column.in_list(&values),
                    ));
                }
                Ok(AnyTable::from_table(table))
            }
            Master::Postgres(db) => {
                let mut table = with_columns(Table::new(entity.table.clone(), db.clone()), entity)
                    .with_order(OrderBy::ascending(PostgresCondition::from(ident(
                        &entity.id,
                    ))));
                for (field, value) in conditions {
                    let cond = db
                        .eq_value_condition(field, AnyPostgresType::from(value.clone()))
                        .map_err(|e| e.to_string())?;
                    table = table.with_condition(cond);
                }
                if let Some((column, values)) = restriction {
                    let column: Column<AnyPostgresType> = Column::new(column);
                    let values: Vec<AnyPostgresType> =
                        values.iter().cloned().map(AnyPostgresType::from).collect();
                    table = table.with_condition(in_or_nothing::<PostgresCondition>(
                        values.is_empty(),
                        || column.in_list(&values),
                    ));
                }
                Ok(AnyTable::from_table(table))
            }
            Master::Surreal(db, _) => {
                let id: vantage_expressions::Expression<AnySurrealType> =
                    vantage_expressions::Expression::new("id", vec![]);
                let mut table = with_columns(Table::new(entity.table.clone(), db.clone()), entity)
                    .with_order(OrderBy::ascending(id));
                // The id column holds record ids (`product:p01`), not text.
                let surreal_value = |field: &str, value: &Cbor| -> CliResult<AnySurrealType> {
                    let value = match value {
                        Cbor::Text(key) if *field == entity.id => {
                            surreal_keys::check_key(key)?;
                            Cbor::Tag(
                                8,
                                Box::new(Cbor::Array(vec![
                                    Cbor::Text(entity.table.clone()),
                                    Cbor::Text(key.clone()),
                                ])),
                            )
                        }
                        other => other.clone(),
                    };
                    AnySurrealType::from_cbor(&value)
                        .ok_or_else(|| format!("{value:?} has no SurrealDB type"))
                };
                for (field, value) in conditions {
                    let cond = db
                        .eq_value_condition(field, surreal_value(field, value)?)
                        .map_err(|e| e.to_string())?;
                    table = table.with_condition(cond);
                }
                if let Some((column, values)) = restriction {
                    let cond = if values.is_empty() {
                        vantage_expressions::Expression::new("false", vec![])
                    } else {
                        let values: Vec<Cbor> = values
                            .iter()
                            .map(|v| surreal_value(column, v).map(|v| v.value().clone()))
                            .collect::<CliResult<_>>()?;
                        let list = AnySurrealType::from_cbor(&Cbor::Array(values))
                            .ok_or("the related ids have no SurrealDB type")?;
                        vantage_expressions::Expression::new(
                            format!("{} IN {{}}", surreal_ident(column)?),
                            vec![vantage_expressions::ExpressiveEnum::Scalar(list)],
                        )
                    };
                    table = table.with_condition(cond);
                }
                Ok(surreal_keys::bare_keys(AnyTable::from_table(table)))
            }
        }
    }
}

/// A column or table name quoted for SurrealQL.
fn surreal_ident(name: &str) -> CliResult<String> {
    if name.is_empty() || name.contains('`') || name.contains('\\') {
        return Err(format!("'{name}' cannot be a SurrealDB name"));
    }
    Ok(format!("`{name}`"))
}

/// `DEFINE TABLE IF NOT EXISTS`: SurrealDB 3 refuses some statements (a
/// `DELETE` of every row, for one) on a table that does not exist yet.
async fn define_surreal_table(db: &SurrealDB, table: &str) -> CliResult<()> {
    use vantage_expressions::ExprDataSource as _;
    let ddl: vantage_expressions::Expression<AnySurrealType> = vantage_expressions::Expression::new(
        format!(
            "DEFINE TABLE IF NOT EXISTS {} SCHEMALESS",
            surreal_ident(table)?
        ),
        vec![],
    );
    db.execute(&ddl).await.map(drop).map_err(|e| e.to_string())
}

/// `IN (...)` over the values, or a condition no row meets when there are
/// none (`IN ()` is not valid SQL everywhere).
fn in_or_nothing<C>(empty: bool, build: impl FnOnce() -> C) -> C
where
    C: From<vantage_sql::primitives::identifier::Identifier>,
    C: From<vantage_expressions::Expression<bool>>,
{
    if empty {
        C::from(vantage_expressions::Expression::new("1 = 0", vec![]))
    } else {
        build()
    }
}

/// `host:port/db` of a PostgreSQL or SurrealDB URL, without user or password.
fn url_place(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    rest.split('?').next().unwrap_or(rest).to_string()
}

fn show_duration(d: Duration) -> String {
    if d.as_micros() < 1000 {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    }
}

/// A value as text, read by its column type (SQLite keeps booleans as 0/1).
fn show_typed(ty: Option<ColumnType>, value: &Cbor) -> String {
    match (ty, value) {
        (Some(ColumnType::Bool), Cbor::Integer(i)) => (i128::from(*i) != 0).to_string(),
        _ => show_cbor(value),
    }
}

fn show_cbor(value: &Cbor) -> String {
    match value {
        Cbor::Null => String::new(),
        Cbor::Text(s) => s.clone(),
        Cbor::Bool(b) => b.to_string(),
        Cbor::Integer(i) => i128::from(*i).to_string(),
        Cbor::Float(f) => f.to_string(),
        other => format!("{other:?}"),
    }
}

/// The rows as an aligned table: id, title columns, then others, at most five.
fn render_table(entity: &Entity, rows: &IndexMap<String, Record<Cbor>>) -> String {
    let mut columns: Vec<String> = vec![entity.id.clone()];
    for title in &entity.title {
        if !columns.contains(title) {
            columns.push(title.clone());
        }
    }
    for name in entity.columns.keys() {
        if columns.len() >= 5 {
            break;
        }
        if !columns.contains(name) {
            columns.push(name.clone());
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(id, record)| {
            columns
                .iter()
                .map(|c| {
                    if *c == entity.id {
                        id.clone()
                    } else {
                        record
                            .get(c)
                            .map(|v| show_typed(entity.columns.get(c).copied(), v))
                            .unwrap_or_default()
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, values: &[String]| {
        let mut text = String::new();
        for (i, v) in values.iter().enumerate() {
            let pad = widths[i].saturating_sub(v.chars().count());
            let _ = write!(text, "{v}{}  ", " ".repeat(pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &columns);
    line(
        &mut out,
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    );
    for row in &cells {
        line(&mut out, row);
    }
    out
}

fn record_to_json(entity: &Entity, id: &str, record: &Record<Cbor>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(entity.id.clone(), serde_json::Value::String(id.to_string()));
    for (field, value) in record.iter() {
        if *field == entity.id {
            continue;
        }
        let ty = entity.columns.get(field).copied();
        let json = match (ty, value) {
            (Some(ColumnType::Bool), Cbor::Integer(i)) => {
                serde_json::Value::Bool(i128::from(*i) != 0)
            }
            (_, Cbor::Null) => serde_json::Value::Null,
            (_, Cbor::Text(s)) => serde_json::Value::String(s.clone()),
            (_, Cbor::Bool(b)) => serde_json::Value::Bool(*b),
            (_, Cbor::Integer(i)) => serde_json::json!(i128::from(*i) as i64),
            (_, Cbor::Float(f)) => serde_json::json!(f),
            (_, other) => serde_json::Value::String(format!("{other:?}")),
        };
        map.insert(field.clone(), json);
    }
    serde_json::Value::Object(map)
}

/// The outboxes of one run: one per entity, in `FOLDER/<entity>`, opened
/// on first use.
struct Outboxes {
    folder: Option<PathBuf>,
    open: BTreeMap<String, OutboxLayer>,
}

impl Outboxes {
    fn new(folder: Option<PathBuf>) -> Self {
        Self {
            folder,
            open: BTreeMap::new(),
        }
    }

    /// The entity's outbox (`None` without `--outbox`).
    fn layer(&mut self, entity: &str) -> CliResult<Option<OutboxLayer>> {
        let Some(folder) = &self.folder else {
            return Ok(None);
        };
        if let Some(layer) = self.open.get(entity) {
            return Ok(Some(layer.clone()));
        }
        let layer = OutboxLayer::open(folder.join(entity)).map_err(|e| e.to_string())?;
        self.open.insert(entity.to_string(), layer.clone());
        Ok(Some(layer))
    }

    /// Apply what earlier runs left pending, entity by entity.
    async fn drain_leftovers(
        &mut self,
        model: &Model,
        master: &Master,
        tables: &Tables,
    ) -> CliResult<()> {
        let Some(folder) = self.folder.clone() else {
            return Ok(());
        };
        let mut draining = Vec::new();
        for (name, entity) in &model.entities {
            if !folder
                .join(name)
                .join(vantage_live::outbox::FILE_NAME)
                .is_file()
            {
                continue;
            }
            let layer = self.layer(name)?.expect("an outbox folder");
            if layer.handle().pending().is_empty() {
                continue;
            }
            let any = master.table(entity, &[], None)?;
            let table = tables.live(any, name.clone()).with_outbox_layer(layer);
            // The drain runs through the LiveTable's stack: `outbox()`
            // assembles it (nothing starts until the drain is asked to).
            let _ = table.outbox();
            draining.push(table);
        }
        self.drain_all(" from an earlier run", false).await;
        drop(draining);
        Ok(())
    }

    /// Try to apply every pending write now; print what was applied or
    /// rejected, and what still waits.
    async fn drain_all(&self, origin: &str, close: bool) {
        for (name, layer) in &self.open {
            let outbox = layer.handle();
            if outbox.pending().is_empty() {
                if close {
                    outbox.close().await;
                }
                continue;
            }
            let mut settled = outbox.subscribe();
            let outcome =
                tokio::time::timeout(Duration::from_secs(20), outbox.flush_or_stall()).await;
            while let Ok(event) = settled.try_recv() {
                print_settled(name, &event, origin);
            }
            match outcome {
                Ok(FlushOutcome::Empty) => {}
                Ok(FlushOutcome::Stalled { pending, error }) => println!(
                    "{pending} {name} write(s) pending in the outbox: the master is unreachable ({error})"
                ),
                Ok(FlushOutcome::Closed { pending }) => {
                    println!("{pending} {name} write(s) pending in the outbox")
                }
                Ok(_) => {}
                Err(_) => println!(
                    "{} {name} write(s) still pending in the outbox after 20 s",
                    outbox.stats().pending
                ),
            }
            if close {
                outbox.close().await;
            }
        }
    }
}

fn print_settled(entity: &str, event: &Settled, origin: &str) {
    let op = event.write.op.op();
    let id = match &event.write.op {
        OutboxOp::DeleteAll { .. } => String::new(),
        other => format!(" '{}'", other.id().unwrap_or_default()),
    };
    match &event.verdict {
        Verdict::Applied(_) => println!("Applied {op} {entity}{id}{origin} to the master"),
        Verdict::Rejected(dead) => println!(
            "Rejected {op} {entity}{id}{origin}: {} (kept in the outbox's dead letters)",
            dead.error
        ),
        _ => {}
    }
}
