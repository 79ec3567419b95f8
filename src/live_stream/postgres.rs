//! PostgreSQL `LISTEN`/`NOTIFY` as a [`LiveStream`].

use std::fmt;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sqlx::postgres::{PgListener, PgPool};

use super::{LiveEvent, LiveStream};

/// PostgreSQL notifications on one channel, as [`LiveEvent`]s.
///
/// Each subscription opens its own listening connection and `LISTEN`s on the
/// channel. Payloads are read as the trigger of [`install_notify_trigger`]
/// writes them (`{"op": "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE", "id":
/// "<row id>"}`), see [`parse_notify_payload`]:
///
/// - `INSERT`, `UPDATE`, `DELETE` with an id become
///   [`LiveEvent::Inserted`], [`LiveEvent::Updated`], [`LiveEvent::Deleted`];
/// - `TRUNCATE` becomes [`LiveEvent::Changed`];
/// - anything else (not JSON, an unknown op, no id) becomes
///   [`LiveEvent::Changed`] with a `warn!`: never a dropped event, never a
///   panic.
///
/// # Connection
///
/// Once `LISTEN` is in place the stream yields one [`LiveEvent::Changed`]:
/// changes committed before that moment were not heard. If the connection
/// cannot be made, or is lost, or fails, the stream ends (with an `info!` or
/// `warn!`); [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer)
/// (and so a [`LiveTable`](crate::LiveTable)) then subscribes again with
/// backoff and drops the cache_key, since notifications sent while nobody
/// listened are gone. The connection URL is never logged.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use vantage_live::{LiveTable, MemCache, PgNotifyLiveStream, install_notify_trigger};
/// # async fn demo(master: vantage_table::any::AnyTable, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// install_notify_trigger(&pool, "client", "id", "client_changes").await?;
/// let events = PgNotifyLiveStream::from_pool(pool, "client_changes");
/// let live = LiveTable::new(master, "clients", Arc::new(MemCache::new()))
///     .with_live_stream(Arc::new(events));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgNotifyLiveStream {
    source: Source,
    channel: String,
}

#[derive(Clone)]
enum Source {
    Url(String),
    Pool(PgPool),
}

impl PgNotifyLiveStream {
    /// Listen on `channel` of the database at `url`. Each subscription opens
    /// one connection of its own.
    pub fn new(url: impl Into<String>, channel: impl Into<String>) -> Self {
        Self {
            source: Source::Url(url.into()),
            channel: channel.into(),
        }
    }

    /// Listen on `channel` through a connection taken from `pool`. The
    /// connection stays checked out while the subscription lasts; size the
    /// pool for it. If the pool is closed, the subscription ends.
    pub fn from_pool(pool: PgPool, channel: impl Into<String>) -> Self {
        Self {
            source: Source::Pool(pool),
            channel: channel.into(),
        }
    }

    /// The channel listened on.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl fmt::Debug for PgNotifyLiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        f.debug_struct("PgNotifyLiveStream")
            .field("channel", &self.channel)
            .field("source", &source)
            .finish()
    }
}

enum State {
    Connect(Source, String),
    Listening(Box<PgListener>, String),
}

async fn listen(source: &Source, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = match source {
        Source::Url(url) => PgListener::connect(url).await?,
        Source::Pool(pool) => PgListener::connect_with(pool).await?,
    };
    // A lost connection ends the subscription instead of being silently
    // replaced: the consumer must learn that notifications were missed.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

impl LiveStream for PgNotifyLiveStream {
    fn subscribe(&self) -> BoxStream<'static, LiveEvent> {
        let start = State::Connect(self.source.clone(), self.channel.clone());
        futures_util::stream::unfold(start, |state| async move {
            match state {
                State::Connect(source, channel) => match listen(&source, &channel).await {
                    Ok(listener) => {
                        tracing::info!(channel, "PostgreSQL LISTEN connected");
                        // Whatever was committed before LISTEN was not heard.
                        Some((
                            LiveEvent::Changed,
                            State::Listening(Box::new(listener), channel),
                        ))
                    }
                    Err(error) => {
                        tracing::warn!(channel, %error, "PostgreSQL LISTEN could not connect");
                        None
                    }
                },
                State::Listening(mut listener, channel) => match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        let payload = notification.payload();
                        let event = parse_notify_payload(payload).unwrap_or_else(|| {
                            tracing::warn!(
                                channel,
                                payload_len = payload.len(),
                                "unreadable NOTIFY payload; treating it as a change of anything"
                            );
                            LiveEvent::Changed
                        });
                        tracing::trace!(channel, event = %event, "NOTIFY received");
                        Some((event, State::Listening(listener, channel)))
                    }
                    Ok(None) => {
                        tracing::info!(channel, "PostgreSQL LISTEN connection lost");
                        None
                    }
                    Err(error) => {
                        tracing::warn!(channel, %error, "PostgreSQL LISTEN failed");
                        None
                    }
                },
            }
        })
        .boxed()
    }
}

/// Read a payload in the format [`install_notify_trigger`] sends: a JSON object
/// with `op` (`INSERT`, `UPDATE`, `DELETE` or `TRUNCATE`, any case) and `id`
/// (text or a number; absent or null for `TRUNCATE`).
///
/// Returns `None` for anything else; [`PgNotifyLiveStream`] turns that into
/// [`LiveEvent::Changed`] with a `warn!`.
pub fn parse_notify_payload(payload: &str) -> Option<LiveEvent> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let object = value.as_object()?;
    let op = object.get("op")?.as_str()?.to_ascii_uppercase();
    let id = match object.get("id") {
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Null) | None => None,
        Some(_) => return None,
    };
    match (op.as_str(), id) {
        ("INSERT", Some(id)) => Some(LiveEvent::Inserted { id }),
        ("UPDATE", Some(id)) => Some(LiveEvent::Updated { id }),
        ("DELETE", Some(id)) => Some(LiveEvent::Deleted { id }),
        ("TRUNCATE", _) => Some(LiveEvent::Changed),
        _ => None,
    }
}

/// The longest channel name PostgreSQL accepts (NAMEDATALEN - 1).
const MAX_CHANNEL: usize = 63;

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A trigger name for `channel` that fits PostgreSQL's 63 bytes: readable
/// when it can be, a stable hash of the channel when it cannot.
fn trigger_name(channel: &str, suffix: &str) -> String {
    let readable = format!("vlive_{channel}_{suffix}");
    if readable.len() <= MAX_CHANNEL {
        return readable;
    }
    // FNV-1a: stable across Rust versions, so re-installs find the trigger.
    let hash = channel.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("vlive_{hash:016x}_{suffix}")
}

/// Make INSERT, UPDATE, DELETE (and TRUNCATE) on `table` notify `channel`.
///
/// Installs, in one transaction:
///
/// - a plpgsql function `vlive_notify()` (in `table`'s schema when `table` is
///   written `schema.table`, else in the first schema of the search path),
///   shared by every table and channel: it takes the channel and the id
///   column as trigger arguments;
/// - a row trigger that sends `{"op": TG_OP, "id": <id column as text>}`
///   after each INSERT, UPDATE and DELETE (an UPDATE that changes the id
///   sends a DELETE of the old id and an INSERT of the new one);
/// - a statement trigger that sends `{"op": "TRUNCATE", "id": null}`.
///
/// Idempotent (`CREATE OR REPLACE`, `DROP TRIGGER IF EXISTS`): run it at
/// migration time, or at startup. Concurrent installs into one schema may
/// conflict; PostgreSQL then reports an error and nothing changes.
///
/// Notifications are sent when the writing transaction commits, and not at
/// all if it rolls back. `channel` must be 1 to 63 bytes (PostgreSQL's
/// limit); otherwise this returns [`sqlx::Error::InvalidArgument`] before
/// touching the database.
pub async fn install_notify_trigger(
    pool: &PgPool,
    table: &str,
    id_column: &str,
    channel: &str,
) -> Result<(), sqlx::Error> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL || channel.contains('\0') {
        return Err(sqlx::Error::InvalidArgument(format!(
            "a NOTIFY channel name must be 1 to {MAX_CHANNEL} bytes without NUL"
        )));
    }
    if id_column.is_empty() || table.is_empty() {
        return Err(sqlx::Error::InvalidArgument(
            "the table and id column names must not be empty".into(),
        ));
    }
    let (schema, table_name) = match table.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    };
    let qualified_table = match schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(table_name)),
        None => quote_ident(table_name),
    };
    let function = match schema {
        Some(schema) => format!("{}.vlive_notify", quote_ident(schema)),
        None => "vlive_notify".to_string(),
    };
    let rows_trigger = quote_ident(&trigger_name(channel, "rows"));
    let truncate_trigger = quote_ident(&trigger_name(channel, "truncate"));
    let args = format!("{}, {}", quote_literal(channel), quote_literal(id_column));

    let create_function = format!(
        r#"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql AS $vlive$
DECLARE
    channel text := TG_ARGV[0];
    id_column text := TG_ARGV[1];
    old_id text;
    new_id text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify(channel, json_build_object('op', TG_OP, 'id', NULL)::text);
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_id := to_jsonb(OLD) ->> id_column;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_id := to_jsonb(NEW) ->> id_column;
    END IF;
    IF TG_OP = 'UPDATE' AND old_id IS DISTINCT FROM new_id THEN
        PERFORM pg_notify(channel, json_build_object('op', 'DELETE', 'id', old_id)::text);
        PERFORM pg_notify(channel, json_build_object('op', 'INSERT', 'id', new_id)::text);
    ELSE
        PERFORM pg_notify(channel, json_build_object('op', TG_OP, 'id', COALESCE(new_id, old_id))::text);
    END IF;
    RETURN NULL;
END;
$vlive$"#
    );
    let statements = [
        create_function,
        format!("DROP TRIGGER IF EXISTS {rows_trigger} ON {qualified_table}"),
        format!(
            "CREATE TRIGGER {rows_trigger} AFTER INSERT OR UPDATE OR DELETE ON {qualified_table} \
             FOR EACH ROW EXECUTE FUNCTION {function}({args})"
        ),
        format!("DROP TRIGGER IF EXISTS {truncate_trigger} ON {qualified_table}"),
        format!(
            "CREATE TRIGGER {truncate_trigger} AFTER TRUNCATE ON {qualified_table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {function}({args})"
        ),
    ];
    let mut tx = pool.begin().await?;
    for statement in &statements {
        sqlx::raw_sql(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!(table, channel, "NOTIFY trigger installed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_names_fit() {
        assert_eq!(trigger_name("orders", "rows"), "vlive_orders_rows");
        let long = "c".repeat(63);
        let name = trigger_name(&long, "truncate");
        assert!(name.len() <= MAX_CHANNEL, "{name}");
        assert_eq!(name, trigger_name(&long, "truncate"));
        assert_ne!(name, trigger_name(&long, "rows"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
