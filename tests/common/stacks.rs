//! The stacks a suite runs over: the default one, and a custom one with
//! tower's own middleware (a concurrency limit and a timeout) between the
//! cache and the master. A suite builds its LiveTables with [`live`]; its
//! [`rerun_over_custom_stack`] test runs the whole suite binary again, in a
//! child process, over the custom stack, so the same tests (not copies)
//! pass over both.

use std::sync::Arc;
use std::time::Duration;

use tower::ServiceBuilder;
use vantage_live::{Cache, LiveTable};
use vantage_table::any::AnyTable;

/// Set in the child process that runs a suite over the custom stack.
pub const STACK_VAR: &str = "VANTAGE_LIVE_TEST_STACK";

/// Whether this process runs its suite over the custom stack.
pub fn custom() -> bool {
    std::env::var(STACK_VAR).is_ok_and(|v| v == "custom")
}

/// A LiveTable over `master`, caching in `cache` under `cache_key`, on the
/// stack this process tests.
pub fn live(master: AnyTable, cache_key: impl Into<String>, cache: Arc<dyn Cache>) -> LiveTable {
    let live = LiveTable::new(master, cache_key, cache);
    if custom() {
        live.with_master_layer(
            ServiceBuilder::new()
                .concurrency_limit(8)
                .timeout(Duration::from_secs(60)),
        )
    } else {
        live
    }
}

/// Run this test binary again over the custom stack (every test but this
/// one) and check that it passes. Does nothing in that child process.
pub fn rerun_over_custom_stack(this_test: &str) {
    if custom() {
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["--skip", this_test, "--test-threads", "2"])
        .env(STACK_VAR, "custom")
        .output()
        .expect("rerun the suite over the custom stack");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("over the custom stack: {summary}");
    assert!(
        output.status.success(),
        "the suite failed over the custom stack:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary.contains(" passed") && !summary.contains(" 0 passed"),
        "the rerun ran no tests:\n{stdout}"
    );
}
