//! The outbox driven through `tower-test`'s mock: the test plays the inner
//! service (the master) and answers each request by hand, so order, one at
//! a time, replays and the two kinds of failure are checked exactly.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tower::Layer;
use vantage_live_layers::outbox::{OutboxLayer, Verdict, WriteStatus};
use vantage_live_layers::{Request, Response, Value, WriteRequest};
use vantage_types::Record;

fn record(price: i64) -> Record<Value> {
    [("price".to_string(), Value::Integer(price.into()))]
        .into_iter()
        .collect()
}

fn write_of(request: &Request) -> (&'static str, Option<String>) {
    match request {
        Request::Write(w) => (w.op(), w.id().map(str::to_owned)),
        Request::Get { id, .. } => ("get", Some(id.clone())),
        other => (other.op(), None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_one_at_a_time_in_order_with_replays_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, mut master) = tower_test::mock::pair::<Request, Response>();
    let layer = OutboxLayer::open(dir.path())
        .unwrap()
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(2));
    let outbox = layer.handle().clone();
    let _service = layer.layer(mock);

    let first = outbox
        .submit(WriteRequest::Insert {
            id: "a".into(),
            record: record(1),
        })
        .await
        .unwrap();
    let second = outbox
        .submit(WriteRequest::Patch {
            id: "a".into(),
            partial: record(2),
        })
        .await
        .unwrap();
    let third = outbox
        .submit(WriteRequest::Delete { id: "b".into() })
        .await
        .unwrap();
    assert!(first.seq() < second.seq() && second.seq() < third.seq());
    assert_eq!(outbox.pending_ids(), ["a", "b"]);

    // The head goes first, alone.
    let (request, reply) = master.next_request().await.unwrap();
    assert_eq!(write_of(&request), ("insert", Some("a".into())));
    tokio::task::yield_now().await;
    assert!(
        master.next_request().now_or_never().is_none(),
        "one at a time"
    );
    // The connection drops: unreachable, the write stays at the head.
    reply.send_error(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "connection reset",
    ));
    // Its retry is a replay: the insert is looked up first, found as
    // written, and counts as applied without being sent again.
    let (request, reply) = master.next_request().await.unwrap();
    assert_eq!(write_of(&request), ("get", Some("a".into())));
    assert!(matches!(
        first.status(),
        WriteStatus::Pending { attempts: 2, .. }
    ));
    reply.send_response(Response::Row(Some(Arc::new(record(1)))));
    assert!(matches!(
        first.verdict().await,
        Verdict::Applied(Response::Record(_))
    ));

    // Then the patch, in order.
    let (request, reply) = master.next_request().await.unwrap();
    assert_eq!(write_of(&request), ("patch", Some("a".into())));
    reply.send_response(Response::Record(record(2)));
    assert!(matches!(second.verdict().await, Verdict::Applied(_)));

    // The master refuses the delete: a dead letter, and the queue goes on.
    let (request, reply) = master.next_request().await.unwrap();
    assert_eq!(write_of(&request), ("delete", Some("b".into())));
    reply.send_error(vantage_core::VantageError::other("no row b to delete"));
    match third.verdict().await {
        Verdict::Rejected(dead) => {
            assert_eq!(dead.write.seq, third.seq());
            assert!(dead.error.contains("no row b"), "{}", dead.error);
            assert_eq!(dead.attempts, 1);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let stats = outbox.stats();
    assert_eq!(
        (
            stats.pending,
            stats.applied,
            stats.rejected,
            stats.replays_recognised
        ),
        (0, 2, 1, 1)
    );
    assert_eq!(outbox.dead_letters().len(), 1);
    let after = outbox
        .submit(WriteRequest::Delete { id: "c".into() })
        .await
        .unwrap();
    let (request, reply) = master.next_request().await.unwrap();
    assert_eq!(write_of(&request), ("delete", Some("c".into())));
    reply.send_response(Response::Done);
    assert!(matches!(
        after.verdict().await,
        Verdict::Applied(Response::Done)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_return_id_answers_the_id_stored_before_the_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, mut master) = tower_test::mock::pair::<Request, Response>();
    let layer = OutboxLayer::open(dir.path())
        .unwrap()
        .id_generator(Arc::new(|| "generated-1".to_string()));
    let outbox = layer.handle().clone();
    let _service = layer.layer(mock);
    let receipt = outbox
        .submit(WriteRequest::InsertReturnId { record: record(5) })
        .await
        .unwrap();
    assert_eq!(receipt.local_response(), Response::Id("generated-1".into()));
    // Sent as an insert under the stored id.
    let (request, reply) = master.next_request().await.unwrap();
    assert_eq!(write_of(&request), ("insert", Some("generated-1".into())));
    reply.send_response(Response::Record(record(5)));
    match receipt.verdict().await {
        Verdict::Applied(Response::Id(id)) => assert_eq!(id, "generated-1"),
        other => panic!("{other:?}"),
    }
}
