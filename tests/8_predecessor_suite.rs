//! The published test suite of the crate this one replaces (`vantage-live`
//! 0.4.8, the `tests/` folder of its crates.io package), run unchanged
//! against this crate: a drop-in upgrade keeps its users' tests passing.
//!
//! The suite is not copied into this repository. The test finds the 0.4.8
//! package in cargo's registry (it is a dev-dependency of this crate, renamed
//! `predecessor`, so it is always downloaded), writes a small manifest under
//! `target/predecessor-suite/` whose test targets point at the package's own
//! test files and whose `vantage-live` is this crate, and runs `cargo test`
//! on it (offline, with this workspace's `Cargo.lock`, in a target folder of
//! its own). Every one of its tests must pass; where our behaviour
//! deliberately differs, the README's "Migrating from 0.4.8" says so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The predecessor's test files, all of them.
const SUITE: [&str; 6] = [
    "1_cache_trait",
    "1_live_event",
    "2_live_table_read",
    "3_live_table_write",
    "4_live_stream",
    "5_anytable_wrap",
];

/// The unpacked `vantage-live-0.4.8` package in cargo's registry.
fn predecessor_package() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let src = cargo_home.join("registry").join("src");
    let found = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("vantage-live-0.4.8"))
        .find(|package| package.join("tests").is_dir());
    found.unwrap_or_else(|| {
        panic!(
            "vantage-live 0.4.8 is not unpacked under {} (it is a dev-dependency: \
             `cargo fetch` brings it)",
            src.display()
        )
    })
}

fn manifest(repo: &Path, package: &Path) -> String {
    let mut toml = format!(
        r#"# Written by tests/8_predecessor_suite.rs: vantage-live 0.4.8's own
# tests, run against this repository's vantage-live.
[package]
name = "predecessor-suite"
version = "0.0.0"
edition = "2021"
publish = false

[dev-dependencies]
vantage-live = {{ path = {repo:?} }}
vantage-redb = "0.4.0"
vantage-table = "0.4.12"
vantage-dataset = "0.4.3"
vantage-types = "0.4"
vantage-expressions = "=0.4.4"
vantage-vista = "=0.4.10"
ciborium = "0.2"
indexmap = "2"
futures-util = "0.3"
tempfile = "3"
tokio = {{ version = "1", features = ["full", "test-util"] }}
tracing-subscriber = {{ version = "0.3", features = ["env-filter"] }}

[workspace]
"#,
        repo = repo.display().to_string()
    );
    for test in SUITE {
        let path = package.join("tests").join(format!("{test}.rs"));
        toml.push_str(&format!(
            "\n[[test]]\nname = \"{test}\"\npath = {:?}\n",
            path.display().to_string()
        ));
    }
    toml
}

#[test]
fn the_predecessors_own_tests_pass_unchanged() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let package = predecessor_package();
    let suite = repo.join("target").join("predecessor-suite");
    std::fs::create_dir_all(suite.join("src")).unwrap();
    std::fs::write(suite.join("Cargo.toml"), manifest(&repo, &package)).unwrap();
    std::fs::write(suite.join("src").join("lib.rs"), "").unwrap();
    // The same versions as this workspace (cargo drops what it does not use).
    std::fs::copy(repo.join("Cargo.lock"), suite.join("Cargo.lock")).unwrap();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&suite)
        .args(["test", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", suite.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo test on the predecessor's suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect();
    eprintln!("vantage-live 0.4.8's tests against this crate:");
    for line in &results {
        eprintln!("  {line}");
    }
    assert!(
        output.status.success(),
        "the predecessor's suite failed:\n{stdout}\n{stderr}"
    );
    assert!(
        results.iter().all(|l| l.contains(" 0 failed")),
        "every test file passed:\n{stdout}"
    );
    let passed: usize = results
        .iter()
        .filter_map(|l| {
            l.split(". ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    // vantage-live 0.4.8 ships 40 tests; every one of them ran and passed.
    assert_eq!(passed, 40, "all of its tests ran and passed:\n{stdout}");
}
