//! Live events: the event kinds, `ManualLiveStream` fan-out and counts, and
//! how PostgreSQL notification payloads are read. No master, no server.

use futures_util::StreamExt;
use vantage_live::{parse_notify_payload, LiveEvent, LiveStream, ManualLiveStream};

#[test]
fn event_kinds_and_ids() {
    let cases = [
        (LiveEvent::Changed, "changed", None, "changed"),
        (
            LiveEvent::inserted("a"),
            "inserted",
            Some("a"),
            "inserted a",
        ),
        (
            LiveEvent::updated("b/c"),
            "updated",
            Some("b/c"),
            "updated b/c",
        ),
        (LiveEvent::deleted(""), "deleted", Some(""), "deleted "),
    ];
    for (event, kind, id, shown) in cases {
        assert_eq!(event.kind(), kind, "{event:?}");
        assert_eq!(event.id(), id, "{event:?}");
        assert_eq!(event.to_string(), shown);
    }
    assert_eq!(
        LiveEvent::inserted("x"),
        LiveEvent::Inserted { id: "x".into() }
    );
    assert_eq!(
        LiveEvent::updated("x"),
        LiveEvent::Updated { id: "x".into() }
    );
    assert_eq!(
        LiveEvent::deleted("x"),
        LiveEvent::Deleted { id: "x".into() }
    );
    assert_ne!(LiveEvent::inserted("x"), LiveEvent::updated("x"));
}

#[tokio::test]
async fn push_without_subscribers_reaches_nobody() {
    let source = ManualLiveStream::default();
    assert_eq!(source.subscriber_count(), 0);
    assert_eq!(source.push(LiveEvent::Changed), 0);
    // A subscription made afterwards does not see earlier events.
    let mut events = source.subscribe();
    assert_eq!(source.push(LiveEvent::updated("late")), 1);
    assert_eq!(events.next().await, Some(LiveEvent::updated("late")));
}

#[tokio::test]
async fn fan_out_to_every_subscription_of_every_clone_in_order() {
    let source = ManualLiveStream::new();
    let clone = source.clone();
    let mut a = source.subscribe();
    let mut b = source.subscribe();
    let mut c = clone.subscribe();
    assert_eq!(source.subscriber_count(), 3);
    assert_eq!(clone.subscriber_count(), 3);

    let pushed = [
        LiveEvent::inserted("1"),
        LiveEvent::updated("1"),
        LiveEvent::deleted("1"),
        LiveEvent::Changed,
    ];
    for (i, event) in pushed.iter().enumerate() {
        // Alternate which clone pushes: they share subscribers.
        let via = if i % 2 == 0 { &source } else { &clone };
        assert_eq!(via.push(event.clone()), 3, "{event}");
    }
    for events in [&mut a, &mut b, &mut c] {
        let got: Vec<_> = events.by_ref().take(pushed.len()).collect().await;
        assert_eq!(got, pushed);
    }
}

#[tokio::test]
async fn dropped_subscribers_are_not_counted() {
    let source = ManualLiveStream::new();
    let a = source.subscribe();
    let mut b = source.subscribe();
    let c = source.subscribe();
    assert_eq!(source.push(LiveEvent::Changed), 3);
    drop(a);
    assert_eq!(source.subscriber_count(), 2);
    assert_eq!(source.push(LiveEvent::inserted("x")), 2);
    drop(c);
    assert_eq!(source.push(LiveEvent::inserted("y")), 1);
    assert_eq!(b.next().await, Some(LiveEvent::Changed));
    assert_eq!(b.next().await, Some(LiveEvent::inserted("x")));
    assert_eq!(b.next().await, Some(LiveEvent::inserted("y")));
    drop(b);
    assert_eq!(source.push(LiveEvent::Changed), 0);
    assert_eq!(source.subscriber_count(), 0);
}

#[tokio::test]
async fn disconnect_ends_current_subscriptions_after_their_queued_events() {
    let source = ManualLiveStream::new();
    let mut a = source.subscribe();
    let gone = source.subscribe();
    drop(gone);
    assert_eq!(source.push(LiveEvent::updated("q")), 1);
    assert_eq!(source.disconnect(), 1, "only live subscriptions count");
    assert_eq!(source.subscriber_count(), 0);
    assert_eq!(a.next().await, Some(LiveEvent::updated("q")));
    assert_eq!(a.next().await, None, "the stream ends");
    assert_eq!(source.push(LiveEvent::Changed), 0);

    // A new subscription is unaffected.
    let mut b = source.subscribe();
    assert_eq!(source.push(LiveEvent::Changed), 1);
    assert_eq!(b.next().await, Some(LiveEvent::Changed));
}

#[tokio::test]
async fn a_subscription_outlives_its_source_handle() {
    let source = ManualLiveStream::new();
    let keep = source.clone();
    let mut events = source.subscribe();
    drop(source);
    assert_eq!(keep.push(LiveEvent::deleted("z")), 1);
    assert_eq!(events.next().await, Some(LiveEvent::deleted("z")));
    // With every handle gone, nobody can push: the stream ends.
    drop(keep);
    assert_eq!(events.next().await, None);
}

#[test]
fn postgres_payloads() {
    let read = [
        (r#"{"op":"INSERT","id":"p13"}"#, LiveEvent::inserted("p13")),
        (r#"{"op":"UPDATE","id":"p02"}"#, LiveEvent::updated("p02")),
        (r#"{"op":"DELETE","id":"p05"}"#, LiveEvent::deleted("p05")),
        (
            r#"{"op":"delete","id":"lower"}"#,
            LiveEvent::deleted("lower"),
        ),
        (r#"{"id":42,"op":"Update"}"#, LiveEvent::updated("42")),
        (r#"{"op":"TRUNCATE","id":null}"#, LiveEvent::Changed),
        (r#"{"op":"TRUNCATE"}"#, LiveEvent::Changed),
        (
            r#" {"op":"INSERT","id":"sp ace","extra":[1]} "#,
            LiveEvent::inserted("sp ace"),
        ),
    ];
    for (payload, event) in read {
        assert_eq!(parse_notify_payload(payload), Some(event), "{payload}");
    }
    let unreadable = [
        "",
        "garbage",
        "null",
        "[1,2]",
        "{}",
        r#"{"op":"INSERT"}"#,
        r#"{"op":"INSERT","id":null}"#,
        r#"{"op":"MERGE","id":"x"}"#,
        r#"{"op":7,"id":"x"}"#,
        r#"{"op":"UPDATE","id":{"nested":1}}"#,
        r#"{"op":"UPDATE","id":"x""#,
        "\u{0}\u{ffff}",
    ];
    for payload in unreadable {
        assert_eq!(parse_notify_payload(payload), None, "{payload:?}");
    }
}
