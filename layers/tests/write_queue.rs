//! `WriteQueueLayer`, driven through tower-test's mock: the test plays the
//! inner service and answers each request by hand, so ordering, detachment
//! and back-pressure are checked exactly. Time is paused: a `timeout` that
//! elapses means every task ran until it could not go on.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::poll;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_test::mock;
use vantage_core::VantageError;
use vantage_live_layers::write_queue::error::{QueueClosed, WritePanicked};
use vantage_live_layers::{Request, Response, Value, View, WriteQueueLayer, WriteRequest};
use vantage_types::Record;

type Handle = mock::Handle<Request, Response>;

/// The mock as a stack service: errors are `VantageError`s.
fn inner(
    mock: mock::Mock<Request, Response>,
) -> impl Service<Request, Response = Response, Error = VantageError, Future: Send>
       + Clone
       + Send
       + 'static {
    fn to_vantage(error: BoxError) -> VantageError {
        match error.downcast::<VantageError>() {
            Ok(error) => *error,
            Err(error) => VantageError::other(error.to_string()),
        }
    }
    mock.map_err(to_vantage as fn(BoxError) -> VantageError)
}

/// The mock, except that a write to `panic_on` panics before reaching it.
fn panicking(
    mock: mock::Mock<Request, Response>,
    panic_on: &'static str,
) -> impl Service<Request, Response = Response, Error = VantageError, Future: Send>
       + Clone
       + Send
       + 'static {
    let inner = inner(mock);
    tower::service_fn(move |request: Request| {
        let inner = inner.clone();
        async move {
            if write_id(&request) == Some(panic_on) {
                panic!("boom: {panic_on}");
            }
            inner.oneshot(request).await
        }
    })
}

fn record(id: &str) -> Record<Value> {
    [("id".to_string(), Value::Text(id.to_string()))]
        .into_iter()
        .collect()
}

fn insert(id: &str) -> Request {
    WriteRequest::Insert {
        id: id.to_string(),
        record: record(id),
    }
    .into()
}

fn write_id(request: &Request) -> Option<&str> {
    match request {
        Request::Write(w) => w.id(),
        _ => None,
    }
}

/// Start `future` and poll it once, so a write enters the queue now; then
/// let it run on its own task.
async fn start<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut future = Box::pin(future);
    assert!(poll!(future.as_mut()).is_pending());
    tokio::spawn(future)
}

/// The next request the inner service gets. Fails instead of hanging if none
/// comes: with time paused the timeout elapses as soon as every task is stuck;
/// with real time it is a generous guard.
async fn next(handle: &mut Handle) -> (Request, mock::SendResponse<Response>) {
    tokio::time::timeout(Duration::from_secs(60), handle.next_request())
        .await
        .expect("the inner service got no request")
        .expect("the inner service is gone")
}

/// The next request the inner service gets; answer a write with its record.
async fn answer_next(handle: &mut Handle) -> String {
    let (request, reply) = next(handle).await;
    let id = write_id(&request).expect("a write").to_string();
    reply.send_response(Response::Record(record(&id)));
    id
}

/// Let every task run until none can go on; assert the inner service got
/// nothing meanwhile.
async fn assert_idle(handle: &mut Handle) {
    let next = tokio::time::timeout(Duration::from_secs(60), handle.next_request()).await;
    assert!(
        next.is_err(),
        "the inner service got a request: {:?}",
        next.map(|r| r.map(|(request, _)| request))
    );
}

#[tokio::test(start_paused = true)]
async fn writes_are_applied_one_at_a_time_in_order() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::new().layer(inner(mock));

    let mut callers = Vec::new();
    for id in ["a", "b", "c"] {
        callers.push((id, start(queue.clone().oneshot(insert(id))).await));
    }
    for (id, caller) in callers {
        let (request, reply) = next(&mut handle).await;
        assert_eq!(write_id(&request), Some(id));
        // The next write waits until this one has finished.
        assert_idle(&mut handle).await;
        reply.send_response(Response::Record(record(id)));
        let response = caller.await.unwrap().unwrap();
        assert_eq!(response, Response::Record(record(id)), "{id}'s own reply");
    }
    assert_idle(&mut handle).await;
}

#[tokio::test]
async fn each_caller_gets_its_own_reply() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::new().layer(inner(mock));
    let responder = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen.push(answer_next(&mut handle).await);
        }
        seen
    });
    let callers: Vec<_> = (0..100)
        .map(|i| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let id = format!("w{i}");
                let response = queue.oneshot(insert(&id)).await.unwrap();
                assert_eq!(response, Response::Record(record(&id)), "{id}'s own reply");
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(responder.await.unwrap().len(), 100);
}

#[tokio::test(start_paused = true)]
async fn reads_do_not_wait_behind_writes() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::with_bound(1).layer(inner(mock));

    // One write in flight, the queue full, and a writer waiting for room.
    let mut writers = vec![start(queue.clone().oneshot(insert("a"))).await];
    let (first, first_reply) = next(&mut handle).await;
    assert_eq!(write_id(&first), Some("a"));
    for id in ["b", "c", "d"] {
        writers.push(tokio::spawn(queue.clone().oneshot(insert(id))));
    }
    assert_idle(&mut handle).await;

    let read = tokio::spawn(queue.clone().oneshot(Request::Count(View::new())));
    let (request, reply) = next(&mut handle).await;
    assert!(
        matches!(request, Request::Count(_)),
        "the read went straight through"
    );
    reply.send_response(Response::Count(7));
    assert_eq!(read.await.unwrap().unwrap(), Response::Count(7));

    first_reply.send_response(Response::Record(record("a")));
    for id in ["b", "c", "d"] {
        assert_eq!(answer_next(&mut handle).await, id);
    }
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_whose_caller_gave_up_is_still_applied() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::new().layer(inner(mock));

    // Dropped before the queue's worker ever saw it (the case a plain Buffer
    // skips).
    {
        let mut gone = pin!(queue.clone().oneshot(insert("gone")));
        assert!(poll!(gone.as_mut()).is_pending());
    }
    // Timed out while in flight at the inner service.
    let timed_out = tokio::time::timeout(
        Duration::from_secs(1),
        queue.clone().oneshot(insert("late")),
    )
    .await;
    assert!(timed_out.is_err());

    let (request, reply) = next(&mut handle).await;
    assert_eq!(write_id(&request), Some("gone"));
    reply.send_response(Response::Record(record("gone")));
    let (request, reply) = next(&mut handle).await;
    assert_eq!(write_id(&request), Some("late"));
    assert_idle(&mut handle).await;
    reply.send_response(Response::Record(record("late")));

    // The queue goes on.
    let next = start(queue.clone().oneshot(insert("next"))).await;
    assert_eq!(answer_next(&mut handle).await, "next");
    assert_eq!(
        next.await.unwrap().unwrap(),
        Response::Record(record("next"))
    );
}

#[tokio::test]
async fn a_rejected_write_gets_the_target_s_error_and_the_queue_goes_on() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::new().layer(inner(mock));
    let a = start(queue.clone().oneshot(insert("a"))).await;
    let b = start(queue.clone().oneshot(insert("b"))).await;
    let c = start(queue.clone().oneshot(insert("c"))).await;

    assert_eq!(answer_next(&mut handle).await, "a");
    let (request, reply) = next(&mut handle).await;
    assert_eq!(write_id(&request), Some("b"));
    reply.send_error(VantageError::other("Cannot patch missing row"));
    assert_eq!(answer_next(&mut handle).await, "c");

    assert_eq!(a.await.unwrap().unwrap(), Response::Record(record("a")));
    let error = b.await.unwrap().unwrap_err();
    assert_eq!(error.to_string(), "Cannot patch missing row");
    let error = error
        .downcast_ref::<VantageError>()
        .expect("the target's error, unchanged");
    assert!(
        std::error::Error::source(error).is_none(),
        "the target's error, unchanged"
    );
    assert_eq!(c.await.unwrap().unwrap(), Response::Record(record("c")));
}

#[tokio::test]
async fn a_panicking_write_is_reported_and_the_queue_goes_on() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::new().layer(panicking(mock, "boom"));
    let a = start(queue.clone().oneshot(insert("a"))).await;
    let boom = start(queue.clone().oneshot(insert("boom"))).await;
    let c = start(queue.clone().oneshot(insert("c"))).await;

    assert_eq!(answer_next(&mut handle).await, "a");
    assert_eq!(answer_next(&mut handle).await, "c");

    assert!(a.await.unwrap().is_ok());
    let error = boom.await.unwrap().unwrap_err();
    assert!(error.to_string().contains("panicked"), "{error}");
    let panicked = error
        .downcast_ref::<WritePanicked>()
        .expect("the error is WritePanicked");
    assert_eq!(panicked.message(), "boom: boom");
    assert!(c.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_makes_callers_wait() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::with_bound(1).layer(inner(mock));

    let a = start(queue.clone().oneshot(insert("a"))).await;
    let (request, a_reply) = next(&mut handle).await;
    assert_eq!(write_id(&request), Some("a"));
    // `b` is taken by the worker (waiting for `a` to finish), `c` fills the
    // one slot: bound + 2 writes accepted.
    let b = tokio::spawn(queue.clone().oneshot(insert("b")));
    let c = tokio::spawn(queue.clone().oneshot(insert("c")));
    assert_idle(&mut handle).await;

    // `d` finds no room: it waits, and giving up while waiting withdraws it.
    let d = tokio::time::timeout(Duration::from_secs(1), queue.clone().oneshot(insert("d"))).await;
    assert!(d.is_err(), "d waited for room");
    // `e` waits for room and is not turned away.
    let e = tokio::spawn(queue.clone().oneshot(insert("e")));
    assert_idle(&mut handle).await;

    a_reply.send_response(Response::Record(record("a")));
    assert_eq!(answer_next(&mut handle).await, "b");
    assert_eq!(answer_next(&mut handle).await, "c");
    assert_eq!(answer_next(&mut handle).await, "e", "d was never accepted");
    for caller in [a, b, c, e] {
        caller.await.unwrap().unwrap();
    }
    assert_idle(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_applies_accepted_writes_then_ends_the_worker() {
    let (mock, mut handle) = mock::pair();
    let queue = WriteQueueLayer::new().layer(inner(mock));
    for id in ["a", "b", "c"] {
        // Each caller enters the queue and gives up at once.
        let mut write = pin!(queue.clone().oneshot(insert(id)));
        assert!(poll!(write.as_mut()).is_pending());
    }
    drop(queue);

    for id in ["a", "b", "c"] {
        assert_eq!(answer_next(&mut handle).await, id);
    }
    // The worker has ended and let go of the inner service: no mock is left.
    let last = tokio::time::timeout(Duration::from_secs(60), handle.next_request()).await;
    assert!(
        matches!(last, Ok(None)),
        "the worker still holds the inner service"
    );
}

#[test]
fn a_stack_can_be_built_outside_a_runtime() {
    let (mock, _handle) = mock::pair::<Request, Response>();
    let queue = WriteQueueLayer::new().layer(inner(mock));
    let clone = queue.clone();
    assert_eq!(
        clone.bound(),
        vantage_live_layers::write_queue::DEFAULT_BOUND
    );
    drop((queue, clone));
}

#[test]
fn a_bound_of_zero_is_taken_as_one() {
    assert_eq!(WriteQueueLayer::with_bound(0).get_bound(), 1);
    assert_eq!(WriteQueueLayer::new().bound(0).get_bound(), 1);
}

#[tokio::test]
async fn a_queue_whose_runtime_is_gone_is_closed() {
    let (mock, _handle) = mock::pair::<Request, Response>();
    let queue = WriteQueueLayer::new().layer(inner(mock));
    // Start the queue on a runtime that then shuts down.
    let started = queue.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut write = pin!(started.oneshot(insert("a")));
            assert!(poll!(write.as_mut()).is_pending());
        });
    })
    .join()
    .unwrap();

    let error = queue.oneshot(insert("b")).await.unwrap_err();
    assert!(error.is::<QueueClosed>(), "{error}");
}
