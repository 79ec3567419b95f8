//! Invalidation fan-out over NATS: [`NatsFanout`] (the connection),
//! [`NatsPublisher`] (writes go out) and [`NatsLiveStream`] (they come back
//! in as [`LiveEvent`]s).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::watch;
use tower::BoxError;
use vantage_live_layers::publish::Publisher;

use super::{LiveEvent, LiveStream};
use crate::redact::{redact_url, scrub, secrets_of};

/// The default subject prefix: `vlive.inv`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "vlive.inv";

/// The header naming the process (the [`NatsFanout`]) that published a
/// message.
pub const ORIGIN_HEADER: &str = "Vlive-Origin";

/// How long a new subscription waits for the connection to be up before it
/// gives up (the event layer then tries again, with backoff).
const CONNECTED_WAIT: Duration = Duration::from_secs(2);

/// How long a subscription waits for the server to confirm it.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// How long a replaying subscription waits for a lost connection to come
/// back before it gives up (and the event layer subscribes again, dropping
/// the cache_key).
const RESUME_WAIT: Duration = Duration::from_secs(30);

/// Why a [`NatsFanout`] could not connect. The URL appears redacted, and the
/// client's own text has it taken out.
#[derive(Debug)]
#[non_exhaustive]
pub enum NatsFanoutError {
    /// The server could not be reached, or refused the connection.
    Connect {
        /// The URL, redacted.
        url: String,
        /// What the client reported (redacted).
        reason: String,
    },
    /// The subject prefix is not a valid NATS subject.
    InvalidSubjectPrefix {
        /// The prefix given.
        prefix: String,
    },
    /// JetStream refused to create or find the stream.
    JetStream {
        /// The stream's name.
        stream: String,
        /// What the server or client reported.
        reason: String,
    },
}

impl fmt::Display for NatsFanoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsFanoutError::Connect { url, reason } => {
                write!(f, "could not connect to NATS at {url}: {reason}")
            }
            NatsFanoutError::JetStream { stream, reason } => {
                write!(f, "JetStream stream {stream:?}: {reason}")
            }
            NatsFanoutError::InvalidSubjectPrefix { prefix } => write!(
                f,
                "invalid NATS subject prefix {prefix:?}: tokens separated by `.`, none empty, \
                 without spaces, `*` or `>`"
            ),
        }
    }
}

impl std::error::Error for NatsFanoutError {}

/// What the connection's events tell subscriptions.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    connected: bool,
    /// Times the connection was lost (or the server dropped messages for a
    /// slow consumer): every one may have lost messages.
    losses: u64,
}

/// One NATS connection for the invalidation fan-out of a process: it makes
/// the [`NatsPublisher`] that the write path uses
/// ([`LiveTable::with_publisher`](crate::LiveTable::with_publisher)) and the
/// [`NatsLiveStream`]s that bring other processes' writes back in
/// ([`LiveTable::with_live_stream`](crate::LiveTable::with_live_stream)).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use vantage_live::{LiveTable, NatsFanout, RedisCache, TieredCache};
/// # async fn demo(master: vantage_table::any::AnyTable) -> Result<(), Box<dyn std::error::Error>> {
/// let cache = TieredCache::new(RedisCache::connect("redis://127.0.0.1:6379").await?);
/// let bus = NatsFanout::connect("nats://127.0.0.1:4222").await?;
/// let live = LiveTable::new(master, "clients", Arc::new(cache))
///     .with_publisher(Arc::new(bus.publisher()))
///     // This process's own writes already dropped its tier 1.
///     .with_live_stream(Arc::new(bus.live_stream("clients").skip_own_messages()));
/// # Ok(()) }
/// ```
///
/// # Subjects
///
/// A cache_key's subject is `<prefix>.<segment>.<segment>…`, one token per
/// `/`-separated segment of the cache_key, each written with `A-Z a-z 0-9 _
/// -` kept and every other byte as `%XX` (an empty segment is `%`). So
/// `clients/eu` is `vlive.inv.clients.eu`, and a process that caches every
/// `clients/…` cache_key can listen on `vlive.inv.clients.>` with
/// [`live_stream_for_subject`](NatsFanout::live_stream_for_subject).
///
/// # Messages
///
/// The payload is JSON, `{"op": "changed" | "inserted" | "updated" |
/// "deleted", "id": "<row id>"}` (no id for `changed`), with the header
/// [`ORIGIN_HEADER`] naming the publishing `NatsFanout` (a UUID).
///
/// The connection reconnects by itself (with backoff); the URL never appears
/// in logs or errors.
#[derive(Clone)]
pub struct NatsFanout {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    origin: String,
    subject_prefix: String,
    redacted: String,
    link: watch::Receiver<Link>,
}

impl fmt::Debug for NatsFanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsFanout")
            .field("url", &self.inner.redacted)
            .field("origin", &self.inner.origin)
            .field("subject_prefix", &self.inner.subject_prefix)
            .finish()
    }
}

impl NatsFanout {
    /// Connect to the NATS server at `url` (`nats://[user:password@]host:port`,
    /// several separated by `,`), with subjects under
    /// [`DEFAULT_SUBJECT_PREFIX`].
    pub async fn connect(url: &str) -> Result<Self, NatsFanoutError> {
        Self::connect_with_prefix(url, DEFAULT_SUBJECT_PREFIX).await
    }

    /// Connect, with subjects under `subject_prefix` (e.g. one per
    /// application sharing the server).
    pub async fn connect_with_prefix(
        url: &str,
        subject_prefix: &str,
    ) -> Result<Self, NatsFanoutError> {
        if !valid_subject(subject_prefix, false) {
            return Err(NatsFanoutError::InvalidSubjectPrefix {
                prefix: subject_prefix.to_string(),
            });
        }
        let (tx, link) = watch::channel(Link::default());
        let tx = Arc::new(tx);
        let events = tx.clone();
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                let exp = u32::try_from(attempts.min(6)).unwrap_or(6);
                Duration::from_millis(25 * 2u64.pow(exp)).min(Duration::from_secs(2))
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            events.send_modify(|l| l.connected = true);
                        }
                        async_nats::Event::Disconnected => events.send_modify(|l| {
                            l.connected = false;
                            l.losses += 1;
                        }),
                        async_nats::Event::SlowConsumer(_) => events.send_modify(|l| l.losses += 1),
                        _ => {}
                    }
                }
            });
        let client = options
            .connect(url)
            .await
            .map_err(|e| NatsFanoutError::Connect {
                url: redact_url(url),
                reason: scrub(&e.to_string(), &secrets_of(url)),
            })?;
        tx.send_modify(|l| l.connected = true);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                origin: uuid::Uuid::now_v7().simple().to_string(),
                subject_prefix: subject_prefix.to_string(),
                redacted: redact_url(url),
                link,
            }),
        })
    }

    /// This connection's origin id (the [`ORIGIN_HEADER`] of what it
    /// publishes).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The subject of `cache_key` (see [Subjects](NatsFanout#subjects)).
    pub fn subject(&self, cache_key: &str) -> String {
        subject_for(&self.inner.subject_prefix, cache_key)
    }

    /// The client, for anything else (JetStream set-up, tests).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        self.inner.link.borrow().connected
    }

    /// How many times the connection was lost (or the server dropped
    /// messages for a slow consumer) so far.
    pub fn connection_losses(&self) -> u64 {
        self.inner.link.borrow().losses
    }

    /// Make sure the JetStream stream `name` keeps every invalidation
    /// published under this connection's subject prefix, in memory, for
    /// `max_age`: listeners made with
    /// [`replay_from`](NatsLiveStream::replay_from) then replay what they
    /// missed while disconnected instead of dropping their tier 1. Creates
    /// the stream if it is not there; an existing one is used as it is.
    pub async fn ensure_stream(
        &self,
        name: &str,
        max_age: Duration,
    ) -> Result<(), NatsFanoutError> {
        let js = jetstream::new(self.inner.client.clone());
        let config = jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{}.>", self.inner.subject_prefix)],
            max_age,
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| NatsFanoutError::JetStream {
                stream: name.to_string(),
                reason: e.to_string(),
            })
    }

    /// A publisher for the write path.
    pub fn publisher(&self) -> NatsPublisher {
        NatsPublisher {
            fanout: self.clone(),
        }
    }

    /// The invalidations of `cache_key`, as a live stream.
    pub fn live_stream(&self, cache_key: &str) -> NatsLiveStream {
        self.live_stream_for_subject(self.subject(cache_key))
    }

    /// The invalidations published on `subject` (wildcards allowed:
    /// `vlive.inv.clients.>`), as a live stream.
    pub fn live_stream_for_subject(&self, subject: impl Into<String>) -> NatsLiveStream {
        NatsLiveStream {
            fanout: self.clone(),
            subject: subject.into(),
            skip_own: false,
            replay: None,
            resumes: Arc::default(),
        }
    }
}

/// Whether `subject` is a NATS subject (`wildcards`: `*` and `>` tokens
/// allowed).
fn valid_subject(subject: &str, wildcards: bool) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && !token.chars().any(char::is_whitespace)
                && (wildcards && (token == "*" || token == ">") || !token.contains(['*', '>']))
        })
}

/// `<prefix>.<segment>…`: see [Subjects](NatsFanout#subjects).
pub fn subject_for(prefix: &str, cache_key: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + cache_key.len() + 8);
    subject.push_str(prefix);
    for segment in cache_key.split('/') {
        subject.push('.');
        if segment.is_empty() {
            subject.push('%');
            continue;
        }
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                subject.push(char::from(byte));
            } else {
                subject.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    subject
}

/// The JSON payload of `event`.
pub fn encode_event(event: &LiveEvent) -> Vec<u8> {
    let value = match event.id() {
        Some(id) => serde_json::json!({ "op": event.kind(), "id": id }),
        None => serde_json::json!({ "op": event.kind() }),
    };
    serde_json::to_vec(&value).unwrap_or_else(|_| br#"{"op":"changed"}"#.to_vec())
}

/// Read a payload written by [`encode_event`]; `None` if it is not one.
pub fn decode_event(payload: &[u8]) -> Option<LiveEvent> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let object = value.as_object()?;
    let op = object.get("op")?.as_str()?;
    let id = match object.get("id") {
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        None | Some(serde_json::Value::Null) => None,
        Some(_) => return None,
    };
    match (op, id) {
        ("changed", _) => Some(LiveEvent::Changed),
        ("inserted", Some(id)) => Some(LiveEvent::Inserted { id }),
        ("updated", Some(id)) => Some(LiveEvent::Updated { id }),
        ("deleted", Some(id)) => Some(LiveEvent::Deleted { id }),
        _ => None,
    }
}

/// Publishes every acknowledged write's invalidation on the cache_key's
/// subject (see [`NatsFanout`]). Made by [`NatsFanout::publisher`]; give it
/// to [`LiveTable::with_publisher`](crate::LiveTable::with_publisher).
///
/// A publish resolves once the client has taken the message (it sends it at
/// once, or after a reconnect); the write path bounds it with a timeout.
#[derive(Clone, Debug)]
pub struct NatsPublisher {
    fanout: NatsFanout,
}

impl NatsPublisher {
    /// The connection it publishes through.
    pub fn fanout(&self) -> &NatsFanout {
        &self.fanout
    }
}

impl Publisher for NatsPublisher {
    fn publish(
        &self,
        cache_key: &str,
        event: LiveEvent,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        let inner = self.fanout.inner.clone();
        let subject = self.fanout.subject(cache_key);
        Box::pin(async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(ORIGIN_HEADER, inner.origin.as_str());
            inner
                .client
                .publish_with_headers(subject, headers, Bytes::from(encode_event(&event)))
                .await
                .map_err(|e| {
                    let reason = e.to_string();
                    BoxError::from(format!("NATS publish failed: {reason}"))
                })
        })
    }
}

/// The invalidations published on a subject, as [`LiveEvent`]s. Made by
/// [`NatsFanout::live_stream`] (one cache_key) or
/// [`NatsFanout::live_stream_for_subject`] (wildcards).
///
/// Each subscription waits (up to 2 s) for the connection to be up,
/// subscribes, waits for the server to confirm, and then yields one
/// [`LiveEvent::Changed`]: what was published before it listened was not
/// heard. Messages become events (see [`decode_event`]); a payload that is
/// not one is a [`LiveEvent::Changed`] with a `warn!`, never dropped.
///
/// **A lost connection ends the subscription** (so does a slow-consumer drop
/// by the server): messages published meanwhile are gone.
/// [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer) (and so a
/// `LiveTable`) then subscribes again with backoff and drops the cache_key,
/// and the new subscription yields `Changed` once it listens: a
/// [`TieredCache`](crate::TieredCache)'s tier 1 is dropped, never left stale.
///
/// # Replay with JetStream
///
/// With [`replay_from`](NatsLiveStream::replay_from) (and a stream made by
/// [`NatsFanout::ensure_stream`]), a lost connection no longer ends the
/// subscription: once the connection is back (within 30 s), it replays, from
/// the stream, every message of its subject published since the last one it
/// saw, and keeps going, so the tier 1 is kept. Only when the stream no
/// longer holds everything since then (its `max_age` passed, it was purged,
/// or the server lost it) does it yield a [`LiveEvent::Changed`] (dropping the
/// tier 1, as without replay); if the connection does not come back in time,
/// the subscription ends as above.
#[derive(Clone, Debug)]
pub struct NatsLiveStream {
    fanout: NatsFanout,
    subject: String,
    skip_own: bool,
    replay: Option<String>,
    resumes: Arc<AtomicU64>,
}

impl NatsLiveStream {
    /// Skip messages published through the same [`NatsFanout`].
    ///
    /// Right when every `LiveTable` of this process that publishes through
    /// it shares the cache backend with the one reading this stream (their
    /// writes already invalidated it); wrong if a table with a cache of its
    /// own relies on the bus to hear this process's writes.
    pub fn skip_own_messages(mut self) -> Self {
        self.skip_own = true;
        self
    }

    /// The subject listened on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Replay missed messages from the JetStream stream `stream` after a lost
    /// connection (see [Replay with JetStream](NatsLiveStream#replay-with-jetstream)).
    pub fn replay_from(mut self, stream: impl Into<String>) -> Self {
        self.replay = Some(stream.into());
        self
    }

    /// How many times a subscription of this stream (or a clone) resumed
    /// after a lost connection with everything it missed replayed (so its
    /// tier 1 was kept).
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }
}

/// Whether `message` came from the connection with origin `origin`.
fn is_own(message: &async_nats::Message, origin: &str) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(ORIGIN_HEADER))
        .is_some_and(|o| o.as_str() == origin)
}

/// The event a message stands for (garbage: `Changed`, with a `warn!`).
fn event_of(message: &async_nats::Message) -> LiveEvent {
    decode_event(&message.payload).unwrap_or_else(|| {
        tracing::warn!(
            subject = %message.subject,
            payload_len = message.payload.len(),
            "unreadable invalidation message; treating it as a change of anything"
        );
        LiveEvent::Changed
    })
}

/// Wait (at most `wait`) for the connection to be up; the losses so far.
async fn connected(link: &mut watch::Receiver<Link>, wait: Duration) -> Option<u64> {
    let up = matches!(
        tokio::time::timeout(wait, link.wait_for(|l| l.connected)).await,
        Ok(Ok(_))
    );
    let losses = link.borrow().losses;
    up.then_some(losses)
}

/// An ordered consumer of `subject` in `stream`, from `start` on.
async fn consume(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    start: u64,
) -> Result<(Ordered, jetstream::stream::State), String> {
    let js = jetstream::new(client.clone());
    let mut handle = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let state = handle
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .clone();
    let start = if start == 0 {
        state.last_sequence + 1
    } else {
        start
    };
    let consumer = handle
        .create_consumer(OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let messages = consumer.messages().await.map_err(|e| e.to_string())?;
    Ok((messages, state))
}

enum Replaying {
    Start,
    Listening {
        messages: Box<Ordered>,
        link: watch::Receiver<Link>,
        losses: u64,
        last: u64,
    },
}

impl NatsLiveStream {
    /// The JetStream flavour of [`LiveStream::subscribe`].
    fn subscribe_replaying(&self, stream: String) -> BoxStream<'static, LiveEvent> {
        let inner = self.fanout.inner.clone();
        let subject = self.subject.clone();
        let skip_own = self.skip_own;
        let resumes = self.resumes.clone();
        futures_util::stream::unfold(Replaying::Start, move |state| {
            let (inner, subject, stream, resumes) =
                (inner.clone(), subject.clone(), stream.clone(), resumes.clone());
            async move {
                match state {
                    Replaying::Start => {
                        let mut link = inner.link.clone();
                        let Some(losses) = connected(&mut link, CONNECTED_WAIT).await else {
                            tracing::warn!(subject, "NATS is not connected; not subscribing");
                            return None;
                        };
                        let (messages, state) =
                            match consume(&inner.client, &stream, &subject, 0).await {
                                Ok(found) => found,
                                Err(error) => {
                                    tracing::warn!(subject, stream, %error, "JetStream consumer failed");
                                    return None;
                                }
                            };
                        tracing::info!(subject, stream, "NATS subscription listening (JetStream)");
                        Some((
                            LiveEvent::Changed,
                            Replaying::Listening {
                                messages: Box::new(messages),
                                link,
                                losses,
                                last: state.last_sequence,
                            },
                        ))
                    }
                    Replaying::Listening {
                        mut messages,
                        mut link,
                        mut losses,
                        mut last,
                    } => loop {
                        let lost = tokio::select! {
                            message = messages.next() => match message {
                                Some(Ok(message)) => {
                                    if let Ok(info) = message.info() {
                                        last = last.max(info.stream_sequence);
                                    }
                                    if skip_own && is_own(&message.message, &inner.origin) {
                                        continue;
                                    }
                                    let event = event_of(&message.message);
                                    return Some((
                                        event,
                                        Replaying::Listening { messages, link, losses, last },
                                    ));
                                }
                                Some(Err(error)) => {
                                    tracing::info!(subject, %error, "JetStream consumer interrupted");
                                    true
                                }
                                None => true,
                            },
                            changed = link.changed() => {
                                changed.is_err() || link.borrow().losses != losses
                            }
                        };
                        if !lost {
                            continue;
                        }
                        // Resume from the stream after the last message seen.
                        tracing::info!(subject, "NATS connection lost; will replay from JetStream");
                        let Some(now) = connected(&mut link, RESUME_WAIT).await else {
                            tracing::warn!(subject, "NATS did not come back; subscribing again");
                            return None;
                        };
                        losses = now;
                        let (resumed, state) =
                            match consume(&inner.client, &stream, &subject, last + 1).await {
                                Ok(found) => found,
                                Err(error) => {
                                    tracing::warn!(subject, %error, "JetStream resume failed");
                                    return None;
                                }
                            };
                        messages = Box::new(resumed);
                        let covered =
                            state.first_sequence <= last + 1 && state.last_sequence >= last;
                        if covered {
                            resumes.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(subject, from = last + 1, "resumed; replaying what was missed");
                            continue;
                        }
                        tracing::warn!(
                            subject,
                            "JetStream no longer holds everything missed; treating it as a change of anything"
                        );
                        last = state.last_sequence.max(last);
                        return Some((
                            LiveEvent::Changed,
                            Replaying::Listening { messages, link, losses, last },
                        ));
                    },
                }
            }
        })
        .boxed()
    }
}

enum State {
    Start,
    Listening(Box<async_nats::Subscriber>, watch::Receiver<Link>, u64),
}

impl LiveStream for NatsLiveStream {
    fn subscribe(&self) -> BoxStream<'static, LiveEvent> {
        if let Some(stream) = &self.replay {
            return self.subscribe_replaying(stream.clone());
        }
        let inner = self.fanout.inner.clone();
        let subject = self.subject.clone();
        let skip_own = self.skip_own;
        futures_util::stream::unfold(State::Start, move |state| {
            let inner = inner.clone();
            let subject = subject.clone();
            async move {
                match state {
                    State::Start => {
                        let mut link = inner.link.clone();
                        let up = matches!(
                            tokio::time::timeout(CONNECTED_WAIT, link.wait_for(|l| l.connected))
                                .await,
                            Ok(Ok(_))
                        );
                        if !up {
                            tracing::warn!(subject, "NATS is not connected; not subscribing");
                            return None;
                        }
                        let losses = link.borrow().losses;
                        let subscriber = match inner.client.subscribe(subject.clone()).await {
                            Ok(subscriber) => subscriber,
                            Err(error) => {
                                tracing::warn!(subject, %error, "NATS subscribe failed");
                                return None;
                            }
                        };
                        match tokio::time::timeout(FLUSH_WAIT, inner.client.flush()).await {
                            Ok(Ok(())) => {}
                            _ => {
                                tracing::warn!(subject, "NATS did not confirm the subscription");
                                return None;
                            }
                        }
                        if link.borrow().losses != losses {
                            return None;
                        }
                        tracing::info!(subject, "NATS subscription listening");
                        Some((
                            LiveEvent::Changed,
                            State::Listening(Box::new(subscriber), link, losses),
                        ))
                    }
                    State::Listening(mut subscriber, mut link, losses) => loop {
                        tokio::select! {
                            message = subscriber.next() => {
                                let Some(message) = message else {
                                    tracing::info!(subject, "NATS subscription closed");
                                    return None;
                                };
                                if skip_own && is_own(&message, &inner.origin) {
                                    continue;
                                }
                                let event = event_of(&message);
                                return Some((event, State::Listening(subscriber, link, losses)));
                            }
                            changed = link.changed() => {
                                if changed.is_err() || link.borrow().losses != losses {
                                    tracing::info!(subject, "NATS connection lost; messages may be missed");
                                    return None;
                                }
                            }
                        }
                    },
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_tokens_per_segment() {
        assert_eq!(subject_for("vlive.inv", "clients"), "vlive.inv.clients");
        assert_eq!(
            subject_for("vlive.inv", "clients/eu"),
            "vlive.inv.clients.eu"
        );
        assert_eq!(subject_for("p", "a.b c*>/"), "p.a%2Eb%20c%2A%3E.%",);
        assert_eq!(subject_for("p", ""), "p.%");
        for key in ["a.b", "ünï 🥐", "", "/", "x/y/z", "%"] {
            assert!(valid_subject(&subject_for("p", key), false), "{key:?}");
        }
        assert!(valid_subject("vlive.inv.clients.>", true));
        assert!(!valid_subject("vlive..inv", false));
        assert!(!valid_subject("vlive.>", false));
    }

    #[test]
    fn events_round_trip_and_garbage_is_none() {
        for event in [
            LiveEvent::Changed,
            LiveEvent::inserted("a"),
            LiveEvent::updated("b/c"),
            LiveEvent::deleted("ü"),
        ] {
            assert_eq!(decode_event(&encode_event(&event)), Some(event));
        }
        for garbage in [
            &b""[..],
            b"not json",
            b"{}",
            br#"{"op":"inserted"}"#,
            b"\xff\xfe",
        ] {
            assert_eq!(decode_event(garbage), None);
        }
    }
}
