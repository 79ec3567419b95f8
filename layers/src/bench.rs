//! Measure what a stack of layers costs: an inner service that answers at
//! once, and a helper that times a stack against it.
//!
//! A layer's own cost is small (tens to hundreds of nanoseconds) next to any
//! real master (tens of microseconds at best), so timing a stack over a real
//! table measures the table. [`InstantService`] answers every [`Request`]
//! from rows it holds in memory, without I/O and without allocating per
//! read, so what is left over is the layers. [`measure_overhead`] times a
//! stack and a baseline (usually the bare `InstantService`) in interleaved
//! rounds, so drift on a busy machine hits both alike, and reports medians.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::Layer;
//! use vantage_live_layers::bench::{measure_overhead, InstantService, Settings};
//! use vantage_live_layers::{CacheLayer, NoCache, Request, View};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let instant = InstantService::with_rows(100);
//! let cache = CacheLayer::new(Arc::new(NoCache), "products");
//! let stack = cache.layer(instant.clone());
//! let settings = Settings::quick();
//! let overhead =
//!     measure_overhead(stack, instant, || Request::List(View::new()), &settings).await?;
//! println!("the cache layer (no cache) costs {:?} per read", overhead.own_cost());
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tower::{BoxError, Service, ServiceExt};
use vantage_core::{Result, VantageError};
use vantage_types::Record;

use crate::request::{Request, Response, Rows, Value, WriteRequest};

/// An inner service that answers every request at once from fixed rows.
///
/// - `List` answers the rows (the same `Arc` every time), whatever the view;
/// - `Get` answers the row with that id, or `None`;
/// - `GetSome` answers the first row; `Count` the number of rows;
/// - writes succeed without changing anything: `Insert`, `Replace` and
///   `Patch` answer the record they were given, `Delete` and `DeleteAll`
///   answer `Done`, `InsertReturnId` answers the id `"instant"`.
///
/// It never fails and is always ready. Cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct InstantService {
    rows: Arc<Rows>,
    by_id: Arc<IndexMap<String, Arc<Record<Value>>>>,
}

impl InstantService {
    /// Answer with `rows`.
    pub fn new(rows: Rows) -> Self {
        let by_id = rows
            .iter()
            .map(|(id, record)| (id.clone(), Arc::new(record.clone())))
            .collect();
        Self {
            rows: Arc::new(rows),
            by_id: Arc::new(by_id),
        }
    }

    /// Answer with `n` rows of two fields each: ids `r0`, `r1`, ..., a
    /// `name` (`"row 0"`, ...) and a `price` (the row's number).
    pub fn with_rows(n: usize) -> Self {
        Self::new((0..n).map(|i| (format!("r{i}"), row(i))).collect())
    }

    /// The rows it answers with.
    pub fn rows(&self) -> &Arc<Rows> {
        &self.rows
    }
}

/// One row of [`InstantService::with_rows`].
fn row(i: usize) -> Record<Value> {
    let mut record = Record::new();
    record.insert("name".to_string(), Value::Text(format!("row {i}")));
    record.insert("price".to_string(), Value::Integer((i as i64).into()));
    record
}

impl fmt::Debug for InstantService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstantService")
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl Service<Request> for InstantService {
    type Response = Response;
    type Error = VantageError;
    type Future = Ready<Result<Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        ready(Ok(match request {
            Request::List(_) => Response::Rows(self.rows.clone()),
            Request::Get { id, .. } => Response::Row(self.by_id.get(&id).cloned()),
            Request::GetSome(_) => Response::Some(
                self.rows
                    .first()
                    .map(|(id, record)| (id.clone(), record.clone())),
            ),
            Request::Count(_) => Response::Count(self.rows.len() as i64),
            Request::Write(write) => match write {
                WriteRequest::Insert { record, .. } | WriteRequest::Replace { record, .. } => {
                    Response::Record(record)
                }
                WriteRequest::Patch { partial, .. } => Response::Record(partial),
                WriteRequest::Delete { .. } | WriteRequest::DeleteAll { .. } => Response::Done,
                WriteRequest::InsertReturnId { .. } => Response::Id("instant".to_string()),
            },
        }))
    }
}

/// How long [`measure_overhead`] measures.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Interleaved rounds; each round times one batch of each side. The
    /// figures are medians over the rounds. Odd numbers give a true median.
    pub rounds: usize,
    /// How long one batch lasts (it runs whole calls until this much time
    /// has passed).
    pub batch: Duration,
    /// Calls made on each side before timing starts (fills caches, starts
    /// workers).
    pub warm_up: usize,
}

impl Settings {
    /// A few hundred milliseconds: for doc examples and smoke tests. Noisy.
    pub fn quick() -> Self {
        Self {
            rounds: 11,
            batch: Duration::from_millis(2),
            warm_up: 10,
        }
    }

    /// About 1 s per comparison: 101 rounds of 5 ms batches.
    pub fn standard() -> Self {
        Self {
            rounds: 101,
            batch: Duration::from_millis(5),
            warm_up: 100,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::standard()
    }
}

/// What [`measure_overhead`] found: medians of the time per call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overhead {
    /// The stack's median time per call.
    pub stack: Duration,
    /// The baseline's median time per call.
    pub baseline: Duration,
    /// The median over rounds of (stack − baseline) per call: the stack's
    /// own cost, measured within each round so drift cancels. May be
    /// negative under noise when the stack adds nothing.
    pub difference_ns: f64,
}

impl Overhead {
    /// The stack's own cost per call ([`difference_ns`](Self::difference_ns),
    /// zero if negative).
    pub fn own_cost(&self) -> Duration {
        Duration::from_nanos(self.difference_ns.max(0.0).round() as u64)
    }

    /// Stack time over baseline time.
    pub fn ratio(&self) -> f64 {
        self.stack.as_secs_f64() / self.baseline.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Time one call: `ready`, then `call`, then await the response.
async fn one_call<S>(service: &mut S, request: Request) -> std::result::Result<(), BoxError>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    service
        .ready()
        .await
        .map_err(Into::into)?
        .call(request)
        .await
        .map_err(Into::into)?;
    Ok(())
}

/// Run calls for `batch`; the time per call in nanoseconds.
async fn batch<S>(
    service: &mut S,
    request: &mut impl FnMut() -> Request,
    batch: Duration,
) -> std::result::Result<f64, BoxError>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    let start = Instant::now();
    let mut calls = 0u64;
    loop {
        one_call(service, request()).await?;
        calls += 1;
        let elapsed = start.elapsed();
        if elapsed >= batch {
            return Ok(elapsed.as_nanos() as f64 / calls as f64);
        }
    }
}

/// Time `stack` against `baseline` on the requests `request` makes, in
/// interleaved rounds (the order of the two sides alternates), and report
/// medians. The first error either side answers ends the measurement and is
/// returned.
///
/// Each call is `ready().await`, `call`, and awaiting the response, on the
/// current task: the figure includes readiness and whatever the response
/// future does (a write queue's hop to its worker, say). Run it on the kind
/// of runtime the stack will run on.
pub async fn measure_overhead<S, B>(
    mut stack: S,
    mut baseline: B,
    mut request: impl FnMut() -> Request,
    settings: &Settings,
) -> std::result::Result<Overhead, BoxError>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    B: Service<Request>,
    B::Error: Into<BoxError>,
{
    for _ in 0..settings.warm_up {
        one_call(&mut baseline, request()).await?;
        one_call(&mut stack, request()).await?;
    }
    let rounds = settings.rounds.max(1);
    let mut stack_ns = Vec::with_capacity(rounds);
    let mut base_ns = Vec::with_capacity(rounds);
    let mut diff_ns = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (s, b) = if round % 2 == 0 {
            let b = batch(&mut baseline, &mut request, settings.batch).await?;
            (batch(&mut stack, &mut request, settings.batch).await?, b)
        } else {
            let s = batch(&mut stack, &mut request, settings.batch).await?;
            (s, batch(&mut baseline, &mut request, settings.batch).await?)
        };
        stack_ns.push(s);
        base_ns.push(b);
        diff_ns.push(s - b);
    }
    Ok(Overhead {
        stack: Duration::from_nanos(median(&mut stack_ns).round() as u64),
        baseline: Duration::from_nanos(median(&mut base_ns).round() as u64),
        difference_ns: median(&mut diff_ns),
    })
}

/// The median of `xs` (NaN-free), sorting it in place.
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::View;

    #[tokio::test]
    async fn answers_every_request_kind() {
        let mut s = InstantService::with_rows(3);
        let rows = s.call(Request::List(View::new())).await.unwrap();
        assert!(matches!(rows, Response::Rows(r) if r.len() == 3));
        let got = s
            .call(Request::Get {
                view: View::new(),
                id: "r1".into(),
            })
            .await
            .unwrap();
        assert!(
            matches!(got, Response::Row(Some(r)) if r.get("price") == Some(&Value::Integer(1.into())))
        );
        let missing = s
            .call(Request::Get {
                view: View::new(),
                id: "nope".into(),
            })
            .await
            .unwrap();
        assert!(matches!(missing, Response::Row(None)));
        assert!(matches!(
            s.call(Request::Count(View::new())).await.unwrap(),
            Response::Count(3)
        ));
        let write = Request::Write(WriteRequest::Delete { id: "r1".into() });
        assert!(matches!(s.call(write).await.unwrap(), Response::Done));
        // Writes change nothing.
        assert_eq!(s.rows().len(), 3);
    }

    #[tokio::test]
    async fn a_slower_stack_costs_more_than_its_baseline() {
        // A stack that spins for a while on every call costs measurably
        // more than the instant service it wraps.
        let instant = InstantService::with_rows(1);
        let slow = tower::service_fn({
            let mut inner = instant.clone();
            move |request: Request| {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(20) {
                    std::hint::spin_loop();
                }
                inner.call(request)
            }
        });
        let overhead = measure_overhead(
            slow,
            instant,
            || Request::List(View::new()),
            &Settings::quick(),
        )
        .await
        .unwrap();
        assert!(
            overhead.own_cost() >= Duration::from_micros(15),
            "{overhead:?}"
        );
        assert!(overhead.ratio() > 2.0, "{overhead:?}");
    }
}
