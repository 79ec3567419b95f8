//! The NATS server the fan-out suites share.
//!
//! The server is `VANTAGE_LIVE_NATS_URL` (default `nats://127.0.0.1:4222`).
//! Tests call [`nats_available`]: when the server is unreachable the test
//! prints why and returns, except under `CI=true`, where it fails. Each test
//! publishes under a subject prefix of its own ([`unique_subject_prefix`]).

use std::time::Duration;

use super::postgres::in_ci;
use super::redis::unique_prefix;

/// Where the test server is.
pub fn nats_url() -> String {
    std::env::var("VANTAGE_LIVE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The server's address, for a proxy in front of it.
pub fn nats_addr() -> std::net::SocketAddr {
    let url = nats_url();
    let host = url.trim_start_matches("nats://");
    let host = host.rsplit('@').next().unwrap_or(host);
    host.parse().expect("NATS test URL is host:port")
}

/// Whether NATS is there (connects within 3 s). If not: prints `skipping:
/// ...` and returns `false`, or panics under `CI=true`.
pub async fn nats_available(test: &str) -> bool {
    let reason = match tokio::time::timeout(
        Duration::from_secs(3),
        vantage_live::NatsFanout::connect(&nats_url()),
    )
    .await
    {
        Ok(Ok(_)) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connect timed out after 3 s".to_string(),
    };
    let url = vantage_live::redact_url(&nats_url());
    if in_ci() {
        panic!("{test}: NATS unreachable at {url} ({reason}); CI=true requires it (start it with .ci/run)");
    }
    eprintln!("skipping {test}: NATS unreachable at {url} ({reason})");
    false
}

/// A subject prefix no other test uses: `vtest.<unique>`.
pub fn unique_subject_prefix(tag: &str) -> String {
    format!("vtest.{}", unique_prefix(tag).replace('.', "_"))
}
