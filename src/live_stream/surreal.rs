//! SurrealDB `LIVE SELECT` as a [`LiveStream`].
//!
//! A small client of SurrealDB's WebSocket RPC (CBOR frames, the `cbor`
//! subprotocol) over `tokio-tungstenite`: `signin`, `use`, `live` and `kill`,
//! nothing else. The official `surrealdb` SDK does the same and much more;
//! its debug build adds 77 crates and about two and a half minutes of
//! compile time (measured; see the README), this adds none to a build that
//! already has `vantage-surrealdb`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ciborium::Value as Cbor;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{LiveEvent, LiveStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// CBOR tag of a SurrealDB record id (`[table, key]`).
const TAG_RECORD_ID: u64 = 8;
/// CBOR tag of a UUID (16 bytes).
const TAG_UUID: u64 = 37;

/// How long the kill of a dropped subscription may take before the
/// connection is simply closed.
const KILL_PATIENCE: Duration = Duration::from_secs(2);

/// Changes to one SurrealDB table, from a `LIVE SELECT * FROM <table>`, as
/// [`LiveEvent`]s.
///
/// Each subscription opens its own WebSocket connection to the server, signs
/// in with the URL's user and password (a root user), selects the URL's
/// namespace and database, and starts a live query on the table
/// (SurrealDB's `live` RPC method: the table name is sent as a value, never
/// spliced into a query). Notifications become events:
///
/// - `CREATE`, `UPDATE`, `DELETE` become [`LiveEvent::Inserted`],
///   [`LiveEvent::Updated`], [`LiveEvent::Deleted`] with the record's key:
///   `p01` for `product:p01`, the form a master that strips the table
///   prefix uses. [`with_qualified_ids`](Self::with_qualified_ids) gives
///   `product:p01` instead, the ids `vantage-surrealdb` 0.4's own `AnyTable`
///   uses. Keys that are numbers or UUIDs become their text; array and
///   object keys, which have no id text, become [`LiveEvent::Changed`];
/// - anything else (a frame that is not CBOR, an unknown action, a
///   notification without a record id, the live query reporting an error)
///   becomes [`LiveEvent::Changed`] with a `warn!`: never a dropped event,
///   never a panic.
///
/// # Connection
///
/// Once the live query runs, the stream yields one [`LiveEvent::Changed`]:
/// changes committed before that moment were not heard. If the connection
/// cannot be made (within the connect timeout, 10 s by default), sign-in or
/// the live query is refused, the connection is lost or closed, the server
/// kills the live query, or the server stops answering keepalive pings (one
/// every 20 s by default), the stream ends with an `info!` or `warn!`.
/// [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer) (and so a
/// [`LiveTable`](crate::LiveTable)) then subscribes again with backoff, which
/// starts a new live query, and drops the cache_key, since changes made while
/// nobody listened are gone.
///
/// Dropping the stream (for a `LiveTable`: dropping its last clone) kills the
/// live query (`kill` RPC, on a background task of the current tokio
/// runtime) and closes the connection; the server also forgets the live
/// queries of a connection that closes.
///
/// The URL's password is never logged and never shown by `Debug`; errors
/// name the server's host and port at most.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use vantage_live::{LiveTable, MemCache, SurrealLiveStream};
/// # fn demo(master: vantage_table::any::AnyTable) -> Result<(), Box<dyn std::error::Error>> {
/// let events = SurrealLiveStream::new("ws://root:root@127.0.0.1:8000/bakery/v1", "product")?;
/// let live = LiveTable::new(master, "products", Arc::new(MemCache::new()))
///     .with_live_stream(Arc::new(events));
/// # Ok(()) }
/// ```
///
/// Only `ws://` is supported: this build has no TLS for `wss://`.
#[derive(Clone)]
pub struct SurrealLiveStream {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    /// `ws://host:port/rpc`: no credentials.
    endpoint: String,
    /// `host:port`, for messages.
    place: String,
    credentials: Option<Credentials>,
    namespace: String,
    database: String,
    table: String,
    qualified_ids: bool,
    connect_timeout: Duration,
    keepalive: Duration,
}

#[derive(Clone)]
struct Credentials {
    user: String,
    pass: String,
}

/// A SurrealDB URL that [`SurrealLiveStream::new`] cannot use. Its text says
/// what is wrong and never repeats the URL (which may hold a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurrealUrlError {
    reason: String,
}

impl SurrealUrlError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SurrealUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid SurrealDB URL: {}", self.reason)
    }
}

impl std::error::Error for SurrealUrlError {}

/// Percent-decode `text` (the `what` of a URL) into UTF-8.
fn decode(text: &str, what: &str) -> Result<String, SurrealUrlError> {
    let bad = || SurrealUrlError::new(format!("the {what} has a malformed %-escape"));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| SurrealUrlError::new(format!("the {what} is not valid UTF-8 once decoded")))
}

/// `host` and `port` of `host[:port]` (`[v6]:port` for IPv6), port 80 when
/// none is given.
fn host_port(place: &str) -> Result<(String, u16), SurrealUrlError> {
    let (host, port) = if let Some(rest) = place.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| SurrealUrlError::new("an IPv6 host is missing its ']'"))?;
        let valid = !v6.is_empty()
            && v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !valid {
            return Err(SurrealUrlError::new("the IPv6 host is not an address"));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                SurrealUrlError::new("an IPv6 host must be followed by :port or nothing")
            })?),
        };
        (format!("[{v6}]"), port)
    } else {
        let (host, port) = match place.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (place, None),
        };
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(SurrealUrlError::new(if host.is_empty() {
                "it names no host"
            } else {
                "the host is not a host name or address"
            }));
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => 80,
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| SurrealUrlError::new("the port is not a number from 0 to 65535"))?,
    };
    Ok((host, port))
}

impl SurrealLiveStream {
    /// Watch `table` on the server at `url`:
    /// `ws://[user[:password]@]host[:port]/<namespace>/<database>`
    /// (user, password, namespace and database percent-encoded; without a
    /// port, 80). With a user, each subscription signs in as that root user.
    ///
    /// Fails, before connecting, on a URL that is not of this form or an
    /// empty table name.
    pub fn new(url: &str, table: impl Into<String>) -> Result<Self, SurrealUrlError> {
        let table = table.into();
        if table.is_empty() {
            return Err(SurrealUrlError::new("the table name is empty"));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| SurrealUrlError::new("not a URL (no scheme://)"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "ws" => {}
            "wss" => {
                return Err(SurrealUrlError::new(
                    "wss:// needs TLS, which this build does not include; use ws://",
                ))
            }
            other
                if other
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                return Err(SurrealUrlError::new(format!(
                    "the scheme must be ws://, not {other}://"
                )))
            }
            _ => return Err(SurrealUrlError::new("not a URL (no scheme://)")),
        }
        if rest.contains(['?', '#']) {
            return Err(SurrealUrlError::new(
                "it has a query or fragment; only ws://user:password@host:port/namespace/database is read",
            ));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, place) = match authority.rsplit_once('@') {
            Some((userinfo, place)) => (Some(userinfo), place),
            None => (None, authority),
        };
        let (host, port) = host_port(place)?;
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let [namespace, database] = segments.as_slice() else {
            return Err(SurrealUrlError::new(format!(
                "the path must be /<namespace>/<database>, not {} segment(s)",
                segments.len()
            )));
        };
        let namespace = decode(namespace, "namespace")?;
        let database = decode(database, "database")?;
        let credentials = match userinfo {
            None | Some("") => None,
            Some(userinfo) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some(Credentials {
                    user: decode(user, "user name")?,
                    pass: decode(pass, "password")?,
                })
            }
        };
        let place = format!("{host}:{port}");
        Ok(Self {
            config: Arc::new(Config {
                endpoint: format!("ws://{place}/rpc"),
                place,
                credentials,
                namespace,
                database,
                table,
                qualified_ids: false,
                connect_timeout: Duration::from_secs(10),
                keepalive: Duration::from_secs(20),
            }),
        })
    }

    /// Report ids as `table:key` (`product:p01`), the ids `vantage-surrealdb`
    /// 0.4's `AnyTable` uses, instead of the bare key.
    pub fn with_qualified_ids(mut self) -> Self {
        Arc::make_mut(&mut self.config).qualified_ids = true;
        self
    }

    /// How long connecting, signing in and starting the live query may take
    /// together before the subscription gives up (10 s by default).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).connect_timeout = timeout;
        self
    }

    /// How often to ping the server while no frame arrives (20 s by
    /// default). A connection silent for two more periods is taken as lost.
    /// A zero period is taken as one millisecond.
    pub fn with_keepalive(mut self, period: Duration) -> Self {
        Arc::make_mut(&mut self.config).keepalive = period.max(Duration::from_millis(1));
        self
    }

    /// The table watched.
    pub fn table(&self) -> &str {
        &self.config.table
    }

    /// The namespace the table is in.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// The database the table is in.
    pub fn database(&self) -> &str {
        &self.config.database
    }
}

impl fmt::Debug for SurrealLiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the user or password.
        let c = &self.config;
        f.debug_struct("SurrealLiveStream")
            .field("server", &c.place)
            .field("namespace", &c.namespace)
            .field("database", &c.database)
            .field("table", &c.table)
            .field("signs_in", &c.credentials.is_some())
            .field("qualified_ids", &c.qualified_ids)
            .finish()
    }
}

/// Why a subscription could not start. Never holds credentials.
#[derive(Debug)]
enum SetupError {
    Timeout(Duration),
    Connect(tokio_tungstenite::tungstenite::Error),
    NotCbor,
    Refused {
        method: &'static str,
        message: String,
    },
    Lost,
    BadLiveId,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Timeout(after) => write!(f, "no live query within {after:?}"),
            SetupError::Connect(e) => write!(f, "cannot connect: {e}"),
            SetupError::NotCbor => f.write_str("the server did not accept the cbor protocol"),
            SetupError::Refused { method, message } => {
                write!(f, "the server refused `{method}`: {message}")
            }
            SetupError::Lost => f.write_str("the connection closed during setup"),
            SetupError::BadLiveId => f.write_str("the server answered `live` without a query id"),
        }
    }
}

/// One RPC request frame.
fn request(id: u64, method: &str, params: Vec<Cbor>) -> Message {
    let frame = Cbor::Map(vec![
        (Cbor::Text("id".into()), Cbor::Text(id.to_string())),
        (Cbor::Text("method".into()), Cbor::Text(method.into())),
        (Cbor::Text("params".into()), Cbor::Array(params)),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&frame, &mut bytes).expect("a CBOR map always encodes");
    Message::Binary(bytes.into())
}

fn get<'a>(map: &'a [(Cbor, Cbor)], key: &str) -> Option<&'a Cbor> {
    map.iter()
        .find(|(k, _)| matches!(k, Cbor::Text(t) if t == key))
        .map(|(_, v)| v)
}

/// What one incoming frame is.
#[derive(Debug, PartialEq)]
enum Frame {
    /// The answer to request `id`.
    Response {
        id: String,
        result: Result<Cbor, String>,
    },
    /// A live query notification.
    Notification {
        query: Cbor,
        action: String,
        record: Cbor,
        result: Cbor,
    },
    /// Not CBOR, or neither of the above.
    Garbage(&'static str),
}

fn parse_frame(bytes: &[u8]) -> Frame {
    let Ok(value) = ciborium::from_reader::<Cbor, _>(bytes) else {
        return Frame::Garbage("not CBOR");
    };
    let Cbor::Map(map) = value else {
        return Frame::Garbage("not a CBOR map");
    };
    match get(&map, "id") {
        Some(Cbor::Text(id)) => {
            let result = match (get(&map, "error"), get(&map, "result")) {
                (Some(error), _) => Err(error_message(error)),
                (None, Some(result)) => Ok(result.clone()),
                (None, None) => Ok(Cbor::Null),
            };
            return Frame::Response {
                id: id.clone(),
                result,
            };
        }
        Some(Cbor::Integer(id)) => {
            return Frame::Response {
                id: i128::from(*id).to_string(),
                result: get(&map, "error")
                    .map_or_else(|| Ok(Cbor::Null), |e| Err(error_message(e))),
            }
        }
        _ => {}
    }
    let Some(Cbor::Map(note)) = get(&map, "result") else {
        return Frame::Garbage("neither a response nor a notification");
    };
    let (Some(query), Some(Cbor::Text(action))) = (get(note, "id"), get(note, "action")) else {
        return Frame::Garbage("a notification without a query id or action");
    };
    Frame::Notification {
        query: query.clone(),
        action: action.clone(),
        record: get(note, "record").cloned().unwrap_or(Cbor::Null),
        result: get(note, "result").cloned().unwrap_or(Cbor::Null),
    }
}

fn error_message(error: &Cbor) -> String {
    match error {
        Cbor::Map(map) => match get(map, "message") {
            Some(Cbor::Text(message)) => message.clone(),
            _ => "an error without a message".to_string(),
        },
        Cbor::Text(message) => message.clone(),
        _ => "an error without a message".to_string(),
    }
}

/// The text of a record key: a string as is, a number in decimal, a UUID
/// hyphenated. Array and object keys have none.
fn key_text(key: &Cbor) -> Option<String> {
    match key {
        Cbor::Text(text) => Some(text.clone()),
        Cbor::Integer(n) => Some(i128::from(*n).to_string()),
        Cbor::Tag(TAG_UUID, inner) => match inner.as_ref() {
            Cbor::Bytes(b) if b.len() == 16 => {
                let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
                Some(format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                ))
            }
            Cbor::Text(text) => Some(text.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `(table, key)` of a record id: `Tag(8, [table, key])`, or the text form
/// `table:key`.
fn record_id(record: &Cbor) -> Option<(String, String)> {
    let split = |text: &str| {
        text.split_once(':')
            .map(|(table, key)| (table.to_string(), key.to_string()))
    };
    match record {
        Cbor::Tag(TAG_RECORD_ID, inner) => match inner.as_ref() {
            Cbor::Array(parts) => match parts.as_slice() {
                [Cbor::Text(table), key] => Some((table.clone(), key_text(key)?)),
                _ => None,
            },
            Cbor::Text(text) => split(text),
            _ => None,
        },
        Cbor::Text(text) => split(text),
        _ => None,
    }
}

/// The event for one notification on `table`'s live query.
fn event_for(config: &Config, action: &str, record: &Cbor, result: &Cbor) -> LiveEvent {
    let table = config.table.as_str();
    let id = record_id(record).map(|(record_table, key)| {
        if config.qualified_ids {
            format!("{record_table}:{key}")
        } else {
            key
        }
    });
    match (action, id) {
        ("CREATE", Some(id)) => LiveEvent::Inserted { id },
        ("UPDATE", Some(id)) => LiveEvent::Updated { id },
        ("DELETE", Some(id)) => LiveEvent::Deleted { id },
        ("CREATE" | "UPDATE" | "DELETE", None) => {
            tracing::warn!(
                table,
                action,
                "LIVE notification without a readable record id; treating it as a change of anything"
            );
            LiveEvent::Changed
        }
        ("ERROR", _) => {
            let message = match result {
                Cbor::Text(text) => text.as_str(),
                _ => "no message",
            };
            tracing::warn!(
                table,
                error = message,
                "the LIVE query reported an error; treating it as a change of anything"
            );
            LiveEvent::Changed
        }
        _ => {
            tracing::warn!(
                table,
                action,
                "unknown LIVE notification action; treating it as a change of anything"
            );
            LiveEvent::Changed
        }
    }
}

/// An open connection with its live query.
struct Listener {
    config: Arc<Config>,
    /// `None` once the connection is known to be gone.
    socket: Option<Socket>,
    /// The live query's id, as the server sent it.
    query: Cbor,
    next_id: u64,
    keepalive: Interval,
    /// Keepalive periods since the last frame arrived.
    silent: u32,
}

/// Send request `method` and wait for its answer, skipping notifications
/// (the stream's first `Changed` covers anything they said).
async fn call(
    socket: &mut Socket,
    next_id: &mut u64,
    method: &'static str,
    params: Vec<Cbor>,
) -> Result<Cbor, SetupError> {
    let id = *next_id;
    *next_id += 1;
    socket
        .send(request(id, method, params))
        .await
        .map_err(SetupError::Connect)?;
    let id = id.to_string();
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => match parse_frame(&bytes) {
                Frame::Response { id: got, result } if got == id => {
                    return result.map_err(|message| SetupError::Refused { method, message })
                }
                _ => continue,
            },
            Some(Ok(Message::Close(_))) | None => return Err(SetupError::Lost),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(SetupError::Connect(e)),
        }
    }
}

async fn start(config: Arc<Config>) -> Result<Listener, SetupError> {
    let mut request = config
        .endpoint
        .as_str()
        .into_client_request()
        .map_err(SetupError::Connect)?;
    request
        .headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("cbor"));
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(SetupError::Connect)?;
    let accepted = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        == Some("cbor");
    if !accepted {
        let _ = socket.close(None).await;
        return Err(SetupError::NotCbor);
    }
    let mut next_id = 1;
    if let Some(credentials) = &config.credentials {
        let params = Cbor::Map(vec![
            (
                Cbor::Text("user".into()),
                Cbor::Text(credentials.user.clone()),
            ),
            (
                Cbor::Text("pass".into()),
                Cbor::Text(credentials.pass.clone()),
            ),
        ]);
        call(&mut socket, &mut next_id, "signin", vec![params]).await?;
    }
    let scope = vec![
        Cbor::Text(config.namespace.clone()),
        Cbor::Text(config.database.clone()),
    ];
    call(&mut socket, &mut next_id, "use", scope).await?;
    let query = call(
        &mut socket,
        &mut next_id,
        "live",
        vec![Cbor::Text(config.table.clone())],
    )
    .await?;
    if !matches!(query, Cbor::Tag(TAG_UUID, _) | Cbor::Text(_)) {
        let _ = socket.close(None).await;
        return Err(SetupError::BadLiveId);
    }
    let period = config.keepalive;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Ok(Listener {
        config,
        socket: Some(socket),
        query,
        next_id,
        keepalive,
        silent: 0,
    })
}

impl Listener {
    /// The next event, or `None` when the subscription is over.
    async fn next_event(&mut self) -> Option<LiveEvent> {
        let table = self.config.table.clone();
        loop {
            let socket = self.socket.as_mut()?;
            let frame = tokio::select! {
                frame = socket.next() => frame,
                _ = self.keepalive.tick() => {
                    if self.silent >= 2 {
                        tracing::warn!(table, "SurrealDB stopped answering keepalive pings");
                        return self.lost();
                    }
                    self.silent += 1;
                    let socket = self.socket.as_mut()?;
                    if let Err(error) = socket.send(Message::Ping(Vec::new().into())).await {
                        tracing::warn!(table, %error, "SurrealDB LIVE connection failed");
                        return self.lost();
                    }
                    continue;
                }
            };
            self.silent = 0;
            match frame {
                Some(Ok(Message::Binary(bytes))) => match parse_frame(&bytes) {
                    Frame::Notification {
                        query,
                        action,
                        record,
                        result,
                    } => {
                        if query != self.query {
                            tracing::debug!(table, "notification of another live query; ignored");
                            continue;
                        }
                        if action == "KILLED" {
                            tracing::info!(table, "SurrealDB killed the LIVE query");
                            return self.lost();
                        }
                        let event = event_for(&self.config, &action, &record, &result);
                        tracing::trace!(table, event = %event, "LIVE notification received");
                        return Some(event);
                    }
                    Frame::Response { .. } => continue,
                    Frame::Garbage(what) => {
                        tracing::warn!(
                            table,
                            what,
                            bytes = bytes.len(),
                            "unreadable frame on the LIVE connection; treating it as a change of anything"
                        );
                        return Some(LiveEvent::Changed);
                    }
                },
                Some(Ok(Message::Text(text))) => {
                    tracing::warn!(
                        table,
                        bytes = text.len(),
                        "text frame on the cbor LIVE connection; treating it as a change of anything"
                    );
                    return Some(LiveEvent::Changed);
                }
                Some(Ok(Message::Close(_))) | None => {
                    tracing::info!(table, "SurrealDB LIVE connection closed");
                    return self.lost();
                }
                Some(Ok(_)) => continue, // ping, pong, raw frame
                Some(Err(error)) => {
                    tracing::warn!(table, %error, "SurrealDB LIVE connection failed");
                    return self.lost();
                }
            }
        }
    }

    /// The connection is gone: nothing to kill.
    fn lost(&mut self) -> Option<LiveEvent> {
        self.socket = None;
        None
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        // The stream was dropped while live: kill the query and close, off
        // the dropping task. Without a runtime, dropping the socket closes
        // the connection, and the server drops its live queries.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut next_id = self.next_id;
        let query = self.query.clone();
        let table = self.config.table.clone();
        runtime.spawn(async move {
            let kill = call(&mut socket, &mut next_id, "kill", vec![query]);
            match tokio::time::timeout(KILL_PATIENCE, kill).await {
                Ok(Ok(_)) => tracing::debug!(table, "LIVE query killed"),
                Ok(Err(error)) => {
                    tracing::debug!(table, %error, "LIVE query kill failed; closing the connection")
                }
                Err(_) => {
                    tracing::debug!(table, "LIVE query kill unanswered; closing the connection")
                }
            }
            let _ = tokio::time::timeout(KILL_PATIENCE, socket.close(None)).await;
        });
    }
}

enum State {
    Start(Arc<Config>),
    Listening(Box<Listener>),
}

impl LiveStream for SurrealLiveStream {
    fn subscribe(&self) -> BoxStream<'static, LiveEvent> {
        futures_util::stream::unfold(State::Start(self.config.clone()), |state| async move {
            match state {
                State::Start(config) => {
                    let table = config.table.clone();
                    let place = config.place.clone();
                    let timeout = config.connect_timeout;
                    let started = match tokio::time::timeout(timeout, start(config)).await {
                        Ok(started) => started,
                        Err(_) => Err(SetupError::Timeout(timeout)),
                    };
                    match started {
                        Ok(listener) => {
                            tracing::info!(table, server = place, "SurrealDB LIVE query started");
                            // Whatever changed before the live query ran was not heard.
                            Some((LiveEvent::Changed, State::Listening(Box::new(listener))))
                        }
                        Err(error) => {
                            tracing::warn!(
                                table,
                                server = place,
                                %error,
                                "SurrealDB LIVE query could not start"
                            );
                            None
                        }
                    }
                }
                State::Listening(mut listener) => {
                    let event = listener.next_event().await?;
                    Some((event, State::Listening(listener)))
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CBOR tag of SurrealDB's `NONE`.
    const TAG_NONE: u64 = 6;

    fn encode(value: &Cbor) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(value, &mut bytes).unwrap();
        bytes
    }

    fn text(s: &str) -> Cbor {
        Cbor::Text(s.into())
    }

    fn thing(table: &str, key: Cbor) -> Cbor {
        Cbor::Tag(TAG_RECORD_ID, Box::new(Cbor::Array(vec![text(table), key])))
    }

    fn config(qualified: bool) -> Config {
        let stream =
            SurrealLiveStream::new("ws://root:pw@localhost:8000/ns/db", "product").unwrap();
        let mut config = (*stream.config).clone();
        config.qualified_ids = qualified;
        config
    }

    #[test]
    fn urls() {
        let s = SurrealLiveStream::new("ws://a%40b:p%3Aw@db.example:8001/n%20s/d", "t").unwrap();
        let c = &s.config;
        assert_eq!(c.endpoint, "ws://db.example:8001/rpc");
        assert_eq!((c.namespace.as_str(), c.database.as_str()), ("n s", "d"));
        let creds = c.credentials.as_ref().unwrap();
        assert_eq!((creds.user.as_str(), creds.pass.as_str()), ("a@b", "p:w"));
        let debug = format!("{s:?}");
        assert!(!debug.contains("p:w") && !debug.contains("a@b"), "{debug}");

        let plain = SurrealLiveStream::new("ws://127.0.0.1/ns/db/", "t").unwrap();
        assert_eq!(plain.config.endpoint, "ws://127.0.0.1:80/rpc");
        assert!(plain.config.credentials.is_none());
        let v6 = SurrealLiveStream::new("WS://root@[::1]:8000/ns/db", "t").unwrap();
        assert_eq!(v6.config.endpoint, "ws://[::1]:8000/rpc");
        assert_eq!(v6.config.credentials.as_ref().unwrap().pass, "");

        for (url, table, expect) in [
            ("ws://u:secret@h:1/ns/db", "", "table name is empty"),
            ("not a url secret", "t", "not a URL"),
            ("ws://u:secret@h:99999/ns/db", "t", "port"),
            ("ws://u:secret@h st/ns/db", "t", "host"),
            ("ws://u:secret@/ns/db", "t", "no host"),
            ("ws://u:secret@h/n%zz/db", "t", "%-escape"),
            ("wss://u:secret@h:1/ns/db", "t", "needs TLS"),
            ("http://u:secret@h:1/ns/db", "t", "not http://"),
            ("ws://u:secret@h:1/ns", "t", "/<namespace>/<database>"),
            ("ws://u:secret@h:1/a/b/c", "t", "/<namespace>/<database>"),
            ("ws://u:secret@h:1/a/b?x=secret", "t", "query"),
        ] {
            let error = SurrealLiveStream::new(url, table).unwrap_err().to_string();
            assert!(error.contains(expect), "{url}: {error}");
            assert!(!error.contains("secret"), "{url}: {error}");
        }
    }

    #[test]
    fn frames() {
        let response = Cbor::Map(vec![(text("id"), text("3")), (text("result"), text("ok"))]);
        assert_eq!(
            parse_frame(&encode(&response)),
            Frame::Response {
                id: "3".into(),
                result: Ok(text("ok"))
            }
        );
        let error = Cbor::Map(vec![
            (text("id"), text("4")),
            (
                text("error"),
                Cbor::Map(vec![
                    (text("code"), Cbor::Integer((-1).into())),
                    (text("message"), text("no")),
                ]),
            ),
        ]);
        assert_eq!(
            parse_frame(&encode(&error)),
            Frame::Response {
                id: "4".into(),
                result: Err("no".into())
            }
        );
        let uuid = Cbor::Tag(TAG_UUID, Box::new(Cbor::Bytes(vec![7; 16])));
        let note = Cbor::Map(vec![(
            text("result"),
            Cbor::Map(vec![
                (text("id"), uuid.clone()),
                (text("action"), text("CREATE")),
                (text("record"), thing("product", text("p1"))),
                (text("result"), Cbor::Map(vec![])),
            ]),
        )]);
        assert!(matches!(
            parse_frame(&encode(&note)),
            Frame::Notification { query, action, .. } if query == uuid && action == "CREATE"
        ));
        assert_eq!(parse_frame(b"\xff\x00"), Frame::Garbage("not CBOR"));
        assert!(matches!(
            parse_frame(&encode(&text("x"))),
            Frame::Garbage(_)
        ));
        assert!(matches!(
            parse_frame(&encode(&Cbor::Map(vec![(
                text("result"),
                Cbor::Map(vec![])
            )]))),
            Frame::Garbage(_)
        ));
    }

    #[test]
    fn events() {
        let bare = config(false);
        let qualified = config(true);
        let none = Cbor::Tag(TAG_NONE, Box::new(Cbor::Null));
        let p1 = thing("product", text("p1"));
        assert_eq!(
            event_for(&bare, "CREATE", &p1, &none),
            LiveEvent::inserted("p1")
        );
        assert_eq!(
            event_for(&bare, "UPDATE", &p1, &none),
            LiveEvent::updated("p1")
        );
        assert_eq!(
            event_for(&bare, "DELETE", &p1, &none),
            LiveEvent::deleted("p1")
        );
        assert_eq!(
            event_for(&qualified, "DELETE", &p1, &none),
            LiveEvent::deleted("product:p1")
        );
        let n = thing("product", Cbor::Integer(42.into()));
        assert_eq!(
            event_for(&bare, "CREATE", &n, &none),
            LiveEvent::inserted("42")
        );
        let mut bytes = [0u8; 16];
        bytes[15] = 1;
        let u = thing(
            "product",
            Cbor::Tag(TAG_UUID, Box::new(Cbor::Bytes(bytes.to_vec()))),
        );
        assert_eq!(
            event_for(&bare, "CREATE", &u, &none),
            LiveEvent::inserted("00000000-0000-0000-0000-000000000001")
        );
        assert_eq!(
            event_for(&bare, "UPDATE", &text("product:p2"), &none),
            LiveEvent::updated("p2")
        );
        let array_key = thing("product", Cbor::Array(vec![text("a")]));
        assert_eq!(
            event_for(&bare, "CREATE", &array_key, &none),
            LiveEvent::Changed
        );
        assert_eq!(event_for(&bare, "MERGE", &p1, &none), LiveEvent::Changed);
        assert_eq!(
            event_for(&bare, "ERROR", &none, &text("boom")),
            LiveEvent::Changed
        );
        assert_eq!(
            event_for(&bare, "CREATE", &Cbor::Null, &none),
            LiveEvent::Changed
        );
    }
}
