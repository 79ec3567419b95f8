//! End-to-end: the live_cli example run as a process, in a temp folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The example binary, built (or found up to date) once per test run.
/// `cargo test` builds examples before running tests, so this is usually a
/// no-op; it keeps a lone `cargo test --test 7_live_cli` from running a stale
/// binary.
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "live_cli"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example live_cli");
        assert!(status.success(), "building live_cli failed");
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        profile_dir
            .join("examples")
            .join(format!("live_cli{}", std::env::consts::EXE_SUFFIX))
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run the CLI in `dir` with a SQLite master `dir/bakery.sqlite`.
fn cli(dir: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(binary());
    command
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .arg("--db")
        .arg(dir.join("bakery.sqlite"))
        .args(args);
    command.output().expect("run live_cli").into()
}

fn found(run: &Run) -> Vec<usize> {
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Found "))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// The `outcome` of each cache read traced with --debug, in order.
fn outcomes(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|l| l.split("outcome=\"").nth(1))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

fn assert_one_error_line(run: &Run, expect: &str) {
    assert_eq!(run.code, 1, "exit code; stderr: {}", run.stderr);
    let lines: Vec<_> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {:?}", run.stderr);
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expect),
        "stderr {:?} should mention {expect:?}",
        lines[0]
    );
}

#[test]
fn first_run_creates_and_seeds_then_lists() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(dir.path(), &["product", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(dir.path().join("bakery.sqlite").exists());
    let header = run.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("id") && header.contains("name"),
        "{header}"
    );
    assert!(
        header.split_whitespace().count() <= 5,
        "at most five columns"
    );
    assert!(run.stdout.contains("Country Sourdough"));
    assert_eq!(found(&run), vec![12]);
    let last = run.stdout.lines().last().unwrap();
    assert!(
        last.contains(" in ") && (last.ends_with("µs") || last.ends_with("ms")),
        "{last}"
    );
}

#[test]
fn second_list_in_one_invocation_is_a_hit() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(dir.path(), &["--debug", "client", "list", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![5, 5]);
    assert_eq!(
        outcomes(&run),
        vec!["miss", "populated", "hit"],
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("cache_key=\"client\""));
}

#[test]
fn disk_cache_is_hot_on_the_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let first = cli(dir.path(), &["--cache", cache, "--debug", "bakery", "list"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(outcomes(&first), vec!["miss", "populated"]);
    assert!(Path::new(cache).join("vlive.redb").exists());
    let second = cli(dir.path(), &["--cache", cache, "--debug", "bakery", "list"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(outcomes(&second), vec!["hit"]);
    assert_eq!(found(&second), vec![2]);
}

#[test]
fn add_invalidates_and_the_next_list_shows_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let row = r#"{"name":"Bun","calories":100,"price":90,"is_deleted":false,"inventory_stock":3,"bakery_id":"rye_and_co"}"#;
    let run = cli(
        dir.path(),
        &["--debug", "product", "list", "add", "p13_bun", row, "list"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![12, 13]);
    assert!(run.stdout.contains("Added product 'p13_bun'"));
    assert!(run.stdout.contains("p13_bun"));
    // miss+fill, then the write invalidates, then miss+fill again.
    assert_eq!(
        outcomes(&run),
        vec!["miss", "populated", "invalidated", "miss", "populated"]
    );
    // It reached the master: a fresh process (fresh cache) sees it.
    let again = cli(dir.path(), &["product", "get", "p13_bun"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("\"name\": \"Bun\""));
}

#[test]
fn delete_removes_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(dir.path(), &["product", "delete", "p01_baguette", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Deleted product 'p01_baguette'"));
    assert_eq!(found(&run), vec![11]);
    assert!(!run.stdout.contains("Baguette"));
}

#[test]
fn pages_have_their_own_slots() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(
        dir.path(),
        &[
            "--debug", "product", "ipp=5", "page=2", "list", "page=1", "list", "page=2", "list",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![5, 5, 5]);
    assert_eq!(
        outcomes(&run),
        vec!["miss", "populated", "miss", "populated", "hit"]
    );
    assert!(run.stderr.contains("p2x5") && run.stderr.contains("p1x5"));
    let first_page_two: Vec<_> = run.stdout.lines().filter(|l| l.starts_with("p0")).collect();
    assert!(
        first_page_two[0].starts_with("p06_muffin"),
        "{first_page_two:?}"
    );
}

#[test]
fn conditions_cache_apart() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(
        dir.path(),
        &["--debug", "product", "list", "name=Brioche", "list", "list"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![12, 1, 1]);
    // The conditioned view is its own cache key: a miss first, then a hit.
    assert_eq!(
        outcomes(&run),
        vec!["miss", "populated", "miss", "populated", "hit"]
    );
    assert!(run.stderr.contains("cache_key=\"product?name=Brioche\""));
}

/// A write drops the entity's conditioned and related views too, those
/// cached on disk by an earlier run included: the next run does not serve
/// them stale.
#[test]
fn a_write_drops_every_cached_view_of_the_entity() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let on_disk = |args: &[&str]| cli(dir.path(), &[&["--cache", cache, "--debug"], args].concat());
    let views: [&[&str]; 2] = [
        &["product", "name=Brioche", "list"],
        &[
            "bakery",
            "id=rye_and_co",
            "ref",
            "products",
            "name=Brioche",
            "list",
        ],
    ];
    for view in views {
        let run = on_disk(view);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(found(&run), vec![1], "{view:?} before the delete");
        // Cached on disk: the next run hits (the ref's bakery, then the view).
        let run = on_disk(view);
        assert!(
            outcomes(&run).iter().all(|o| o == "hit"),
            "{view:?}: {}",
            run.stderr
        );
    }
    let run = on_disk(&["product", "delete", "p02_brioche"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for view in views {
        let run = on_disk(view);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            found(&run),
            vec![0],
            "{view:?} after the delete: {}",
            run.stdout
        );
        assert_eq!(
            outcomes(&run).last().map(String::as_str),
            Some("populated"),
            "{view:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn typed_conditions_and_get_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(dir.path(), &["product", "is_deleted=true", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![1]);
    assert!(run.stdout.contains("p08_pretzel"));

    let run = cli(dir.path(), &["client", "get", "cleo"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json_end = run.stdout.rfind('}').unwrap();
    let json: serde_json::Value = serde_json::from_str(&run.stdout[..=json_end]).unwrap();
    assert_eq!(json["id"], "cleo");
    assert_eq!(json["name"], "Cleo Hart");
    assert_eq!(json["is_paying_client"], true);
    assert_eq!(json["balance"], 42.25);
}

#[test]
fn ref_follows_relations() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(
        dir.path(),
        &["bakery", "id=rye_and_co", "ref", "clients", "list"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![3]);
    for name in ["Ada Brooks", "Bram Osei", "Edie Lund"] {
        assert!(run.stdout.contains(name), "{name} in {}", run.stdout);
    }
    let run = cli(dir.path(), &["order", "id=o3", "ref", "client", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![1]);
    assert!(run.stdout.contains("Cleo Hart"));
}

#[test]
fn no_cache_reads_the_master_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(
        dir.path(),
        &["--no-cache", "--debug", "client", "list", "list"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![5, 5]);
    let outcomes = outcomes(&run);
    assert!(!outcomes.contains(&"hit".to_string()), "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "miss").count(), 2);
}

#[test]
fn errors_are_one_clear_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_one_error_line(
        &cli(d, &["cake", "list"]),
        "unknown entity 'cake'; known entities: bakery, client, product, order",
    );
    assert_one_error_line(
        &cli(d, &["product", "colour=red", "list"]),
        "product has no column 'colour'",
    );
    assert_one_error_line(
        &cli(d, &["product", "frobnicate"]),
        "unknown command 'frobnicate'",
    );
    assert_one_error_line(
        &cli(d, &["product", "price=cheap", "list"]),
        "'cheap' is not a valid int for product.price",
    );
    assert_one_error_line(
        &cli(d, &["product", "add", "x", "{not json"]),
        "invalid JSON for add",
    );
    assert_one_error_line(
        &cli(d, &["product", "ref", "nowhere"]),
        "product has no relation 'nowhere'",
    );
    assert_one_error_line(
        &cli(d, &["product", "get", "no_such_id"]),
        "no row with id 'no_such_id'",
    );
    assert_one_error_line(
        &cli(d, &["product", "page=0", "list"]),
        "page must be a whole number",
    );
}

#[test]
fn a_bad_command_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let row = r#"{"name":"Ghost","calories":1,"price":1,"is_deleted":false,"inventory_stock":0,"bakery_id":"rye_and_co"}"#;
    let run = cli(dir.path(), &["product", "add", "ghost", row, "bogus"]);
    assert_one_error_line(&run, "unknown command 'bogus'");
    let check = cli(dir.path(), &["product", "list"]);
    assert_eq!(found(&check), vec![12]);
    assert!(!check.stdout.contains("ghost"));
}

#[test]
fn unreachable_postgres_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run: Run = Command::new(binary())
        .current_dir(dir.path())
        .args([
            "--postgres",
            "postgres://someone:hunter2@127.0.0.1:1/test",
            "product",
            "list",
        ])
        .output()
        .unwrap()
        .into();
    assert_one_error_line(&run, "cannot connect to PostgreSQL at 127.0.0.1:1/test");
    assert!(!run.stderr.contains("hunter2"), "no credentials in errors");
}

/// PostgreSQL at 127.0.0.1:5432, or a skip (a failure when CI=true).
fn postgres_url(schema: &str) -> Option<String> {
    let base = std::env::var("VANTAGE_LIVE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let reachable = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5432".parse().unwrap(),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    if !reachable {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PostgreSQL at 127.0.0.1:5432 is unreachable and CI=true");
        }
        eprintln!("skipping: PostgreSQL unreachable at 127.0.0.1:5432");
        return None;
    }
    let status = Command::new("psql")
        .env("PGOPTIONS", "--client-min-messages=warning")
        .args([base.as_str(), "-qc"])
        .arg(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("could not create schema {schema} with psql");
            }
            eprintln!("skipping: psql could not create schema {schema}");
            return None;
        }
    }
    Some(format!("{base}?options=-c%20search_path%3D{schema}"))
}

#[test]
fn postgres_master_is_seeded_and_cached() {
    let schema = format!("vlive_cli_{}", std::process::id());
    let Some(url) = postgres_url(&schema) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run: Run = Command::new(binary())
        .current_dir(dir.path())
        .args([
            "--postgres",
            &url,
            "--debug",
            "product",
            "ipp=5",
            "list",
            "list",
        ])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![5, 5]);
    assert_eq!(outcomes(&run), vec!["miss", "populated", "hit"]);
    let row = r#"{"name":"Bun","calories":100,"price":90,"is_deleted":false,"inventory_stock":3,"bakery_id":"rye_and_co"}"#;
    let run: Run = Command::new(binary())
        .current_dir(dir.path())
        .args(["--postgres", &url, "product", "add", "p13_bun", row, "list"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![13]);
    let _ = Command::new("psql")
        .env("PGOPTIONS", "--client-min-messages=warning")
        .args(["postgres://postgres@127.0.0.1:5432/test", "-qc"])
        .arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .status();
}

#[test]
fn quickstart_shows_a_miss_then_a_hit_on_every_run() {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "quickstart"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("build quickstart");
    assert!(status.success());
    let bin = binary().with_file_name(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quick.sqlite");
    // Twice: the second run finds the file already seeded.
    for run in 0..2 {
        let out: Run = Command::new(&bin).arg(&file).output().unwrap().into();
        assert_eq!(out.code, 0, "run {run}: {}", out.stderr);
        assert!(
            out.stdout.contains("first (miss: reads SQLite): 12 rows"),
            "{}",
            out.stdout
        );
        assert!(out
            .stdout
            .contains("second (hit: served from the cache): 12 rows"));
        assert!(out.stdout.contains("holds Some(12) rows"));
    }
}

#[test]
fn outbox_add_while_the_master_is_unreachable_lands_on_the_next_run() {
    let schema = format!("vlive_cli_outbox_{}", std::process::id());
    let Some(url) = postgres_url(&schema) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let row = r#"{"name":"Offline bun","calories":100,"price":90,"is_deleted":false,"inventory_stock":3,"bakery_id":"rye_and_co"}"#;
    // The master is unreachable (nothing listens on port 1): the add is
    // accepted locally and reported as pending.
    let run: Run = Command::new(binary())
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .args([
            "--postgres",
            "postgres://someone:hunter2@127.0.0.1:1/test",
            "--outbox",
        ])
        .arg(&outbox)
        .args(["product", "add", "p_offline", row])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("The master is unreachable"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Added product 'p_offline' locally: pending"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("1 product write(s) pending in the outbox"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));
    assert!(outbox.join("product").join("outbox.redb").is_file());

    // The master is back: the next run applies it first, and says so.
    let run: Run = Command::new(binary())
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .args(["--postgres", &url, "--outbox"])
        .arg(&outbox)
        .args(["product", "get", "p_offline", "list"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("Applied insert product 'p_offline' from an earlier run to the master"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Offline bun"), "{}", run.stdout);
    assert_eq!(found(&run), vec![1, 13], "the row is on the master once");

    // A third run has nothing left to apply.
    let run: Run = Command::new(binary())
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .args(["--postgres", &url, "--outbox"])
        .arg(&outbox)
        .args(["product", "list"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("Applied"), "{}", run.stdout);
    assert_eq!(found(&run), vec![13]);
    let _ = Command::new("psql")
        .env("PGOPTIONS", "--client-min-messages=warning")
        .args(["postgres://postgres@127.0.0.1:5432/test", "-qc"])
        .arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .status();
}

/// A fresh database on the SurrealDB test server, as a `--surreal` URL, or a
/// skip (a failure when CI=true).
fn surreal_url(database: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    let base = std::env::var("VANTAGE_LIVE_SURREAL_URL")
        .unwrap_or_else(|_| "ws://root:root@127.0.0.1:8000".to_string());
    // `host:port`, after the scheme and any user and password.
    let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let place = rest.split('/').next().unwrap_or(rest).to_string();
    let reachable = place
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok()
        });
    if !reachable {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("SurrealDB at {place} is unreachable and CI=true");
        }
        eprintln!("skipping: SurrealDB unreachable at {place}");
        return None;
    }
    Some(format!(
        "{}/vlive_test/{database}",
        base.trim_end_matches('/')
    ))
}

/// `REMOVE DATABASE`, best effort.
fn remove_surreal_database(url: &str, database: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let Ok(connection) = surreal_client::SurrealConnection::dsn(url) else {
            return;
        };
        if let Ok(client) = connection.connect().await {
            let _ = client
                .query(&format!("REMOVE DATABASE IF EXISTS `{database}`"), None)
                .await;
        }
    });
}

#[test]
fn surreal_master_is_seeded_cached_and_runs_every_verb() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let database = format!(
        "vlive_cli_{}_{:08x}",
        nanos.as_secs(),
        nanos.subsec_nanos() ^ std::process::id()
    );
    let Some(url) = surreal_url(&database) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let surreal = |args: &[&str]| -> Run {
        Command::new(binary())
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .arg("--surreal")
            .arg(&url)
            .args(args)
            .output()
            .unwrap()
            .into()
    };

    // First use seeds; a second list in one invocation is a hit (the live
    // query's first event comes before the commands run).
    let run = surreal(&["--debug", "product", "ipp=5", "list", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![5, 5]);
    // (The live stream's own invalidations, on subscribing and on its first
    // event, come first.)
    let reads: Vec<String> = outcomes(&run)
        .into_iter()
        .filter(|o| o != "invalidated")
        .collect();
    assert_eq!(reads, vec!["miss", "populated", "hit"], "{}", run.stderr);
    assert!(
        run.stderr.contains("SurrealDB LIVE query started"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("root:root"), "no credentials in logs");

    let run = surreal(&["product", "list"]);
    assert_eq!(found(&run), vec![12], "seeded once: {}", run.stderr);
    let run = surreal(&["product", "get", "p02_brioche"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("\"name\": \"Brioche\""),
        "{}",
        run.stdout
    );

    // Writes, with a key SurrealQL would need quoted.
    let row = r#"{"name":"Bun","calories":100,"price":90,"is_deleted":false,"inventory_stock":3,"bakery_id":"rye_and_co"}"#;
    let run = surreal(&[
        "product",
        "add",
        "p13 bun-1",
        row,
        "list",
        "get",
        "p13 bun-1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![13, 1]);
    assert!(
        run.stdout.contains("\"id\": \"p13 bun-1\""),
        "{}",
        run.stdout
    );
    let run = surreal(&["product", "delete", "p13 bun-1", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![12]);

    // Conditions on a column and on the id, relations both ways, pages.
    let run = surreal(&["product", "name=Brioche", "list"]);
    assert_eq!(found(&run), vec![1], "{}", run.stderr);
    let run = surreal(&["bakery", "id=rye_and_co", "ref", "clients", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![3]);
    let run = surreal(&["client", "id=ada", "ref", "bakery", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![1]);
    assert!(run.stdout.contains("rye_and_co"), "{}", run.stdout);
    let run = surreal(&["product", "ipp=5", "page=3", "list"]);
    assert_eq!(found(&run), vec![2]);

    // A key the master cannot take is a clear error.
    let run = surreal(&["product", "get", "a⟩b"]);
    assert_one_error_line(&run, "holds '⟩'");

    remove_surreal_database(&url, &database);
}

#[test]
fn unreachable_or_misspelt_surreal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = |url: &str| -> Run {
        Command::new(binary())
            .current_dir(dir.path())
            .args(["--surreal", url, "product", "list"])
            .output()
            .unwrap()
            .into()
    };
    let refused = run("ws://someone:hunter2@127.0.0.1:1/bakery/v1");
    assert_one_error_line(
        &refused,
        "cannot connect to SurrealDB at 127.0.0.1:1/bakery/v1",
    );
    for (url, expect) in [
        (
            "http://someone:hunter2@127.0.0.1:1/bakery/v1",
            "the scheme must be ws://",
        ),
        (
            "ws://someone:hunter2@127.0.0.1:1/bakery",
            "/<namespace>/<database>",
        ),
    ] {
        let bad = run(url);
        assert_one_error_line(&bad, expect);
        assert!(!bad.stderr.contains("hunter2"), "no credentials in errors");
    }
    assert!(
        !refused.stderr.contains("hunter2"),
        "no credentials in errors"
    );
}

/// Redis at `VANTAGE_LIVE_REDIS_URL` (default 127.0.0.1:6379), or a skip (a
/// failure when CI=true).
fn redis_url() -> Option<String> {
    let url = std::env::var("VANTAGE_LIVE_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok();
    if !reachable {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Redis is unreachable and CI=true");
        }
        eprintln!("skipping: Redis unreachable");
        return None;
    }
    Some(url)
}

/// Deletes a key prefix's keys when dropped.
struct RedisKeys(String, String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.0.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.1))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

#[test]
fn redis_cache_is_shared_by_runs_in_a_row() {
    let Some(url) = redis_url() else {
        return;
    };
    let prefix = format!("vlive-cli-test-{}", std::process::id());
    let _cleanup = RedisKeys(url.clone(), prefix.clone());
    let dir = tempfile::tempdir().unwrap();
    let with = |args: &[&str]| {
        let mut all = vec!["--redis", url.as_str(), "--redis-prefix", prefix.as_str()];
        all.extend_from_slice(args);
        cli(dir.path(), &all)
    };
    let first = with(&["--debug", "product", "list"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(outcomes(&first), vec!["miss", "populated"]);
    // Another process: the first one's fill is a hit.
    let second = with(&["--debug", "product", "list"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(outcomes(&second), vec!["hit"], "{}", second.stderr);
    assert_eq!(found(&second), vec![12]);
    // One process adds; the next one's list shows the row.
    let row = r#"{"name":"Bun","calories":100,"price":90,"is_deleted":false,"inventory_stock":3,"bakery_id":"rye_and_co"}"#;
    let add = with(&["product", "add", "p13_bun", row]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let third = with(&["--debug", "product", "list"]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(found(&third), vec![13]);
    assert_eq!(outcomes(&third), vec!["miss", "populated"]);
    assert!(third.stdout.contains("p13_bun"));
}

#[test]
fn unreachable_redis_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(
        dir.path(),
        &[
            "--redis",
            "redis://someone:hunter2@127.0.0.1:1",
            "product",
            "list",
        ],
    );
    assert_one_error_line(
        &run,
        "could not connect to Redis at redis://***@127.0.0.1:1",
    );
    assert!(!run.stderr.contains("hunter2"), "no credentials in errors");
}

/// The `outcome`s traced with --debug for one slot (`product/list/-/p1x5`),
/// in order.
fn slot_outcomes(run: &Run, slot: &str) -> Vec<String> {
    let slot = format!("slot={slot} ");
    run.stderr
        .lines()
        .filter(|l| l.contains(&slot))
        .filter_map(|l| l.split("outcome=\"").nth(1))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// The printed rows (table lines, without the header, rule and `Found`
/// line) of every `list`, in order.
fn listed_rows(run: &Run) -> Vec<Vec<String>> {
    let mut lists = Vec::new();
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in run.stdout.lines() {
        if line.starts_with("---") || line.starts_with("-- ") {
            in_table = true;
        } else if line.starts_with("Found ") {
            lists.push(std::mem::take(&mut rows));
            in_table = false;
        } else if in_table {
            rows.push(line.to_string());
        }
    }
    lists
}

/// `product ipp=5`: pages 1 and 2, `set` a row of page 2, pages 1 and 2
/// again; with or without --row-invalidation.
fn scroll_set_scroll(dir: &Path, row_invalidation: bool) -> Run {
    let mut args = vec!["--debug"];
    if row_invalidation {
        args.push("--row-invalidation");
    }
    args.extend([
        "product",
        "ipp=5",
        "page=1",
        "list",
        "page=2",
        "list",
        "set",
        "p07_pain_au_chocolat",
        r#"{"price": 3}"#,
        "page=1",
        "list",
        "page=2",
        "list",
    ]);
    cli(dir, &args)
}

/// The price printed for p07 in each list that shows it.
fn p07_prices(run: &Run) -> Vec<String> {
    listed_rows(run)
        .iter()
        .flatten()
        .filter(|row| row.starts_with("p07_pain_au_chocolat "))
        // id, "Pain au Chocolat", calories, price, is_deleted
        .map(|row| row.split_whitespace().nth(5).unwrap().to_string())
        .collect()
}

#[test]
fn row_invalidation_keeps_the_pages_a_set_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    let run = scroll_set_scroll(dir.path(), true);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("Updated product 'p07_pain_au_chocolat'"),
        "{}",
        run.stdout
    );
    assert_eq!(found(&run), vec![5, 5, 5, 5]);
    // Page 1 does not hold p07: its second read is a hit. Page 2 does: it
    // is read again, and shows the new price.
    assert_eq!(
        slot_outcomes(&run, "product/list/-/p1x5"),
        vec!["miss", "populated", "hit"],
        "{}",
        run.stderr
    );
    assert_eq!(
        slot_outcomes(&run, "product/list/-/p2x5"),
        vec!["miss", "populated", "miss", "populated"],
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("outcome=\"invalidated\" rows=\"p07_pain_au_chocolat\""),
        "a row-level invalidation: {}",
        run.stderr
    );
    assert_eq!(p07_prices(&run), vec!["210", "3"], "{}", run.stdout);
    let lists = listed_rows(&run);
    assert_eq!(lists[0], lists[2], "page 1 is unchanged");

    // Without the flag the write drops the whole cache_key: page 1 is read
    // again too, and the rows printed are the same.
    let dir = tempfile::tempdir().unwrap();
    let plain = scroll_set_scroll(dir.path(), false);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(
        slot_outcomes(&plain, "product/list/-/p1x5"),
        vec!["miss", "populated", "miss", "populated"],
        "{}",
        plain.stderr
    );
    assert_eq!(
        slot_outcomes(&plain, "product/list/-/p2x5"),
        vec!["miss", "populated", "miss", "populated"],
        "{}",
        plain.stderr
    );
    assert_eq!(listed_rows(&plain), lists);

    // The patch reached the master, and changed nothing else of the row.
    let again = cli(dir.path(), &["product", "get", "p07_pain_au_chocolat"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("\"price\": 3,"), "{}", again.stdout);
    assert!(
        again.stdout.contains("\"name\": \"Pain au Chocolat\""),
        "{}",
        again.stdout
    );
}

#[test]
fn master_ipp_serves_the_same_pages() {
    let commands = [
        "product", "ipp=10", "page=1", "list", "page=2", "list", "ipp=3", "page=2", "list",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--debug", "--master-ipp", "4"];
    args.extend(commands);
    let paged = cli(dir.path(), &args);
    assert_eq!(paged.code, 0, "{}", paged.stderr);
    // Page 1 at 10 rows is assembled from master pages 1 to 3 of 4 rows.
    for slot in ["p1x4", "p2x4", "p3x4"] {
        assert!(
            paged
                .stderr
                .contains(&format!("slot=product/list/-/{slot} ")),
            "{slot}: {}",
            paged.stderr
        );
    }
    assert!(
        !paged.stderr.contains("slot=product/list/-/p1x10 "),
        "{}",
        paged.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let plain = cli(dir.path(), &commands);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(found(&paged), vec![10, 2, 3]);
    assert_eq!(listed_rows(&paged), listed_rows(&plain));
    assert!(listed_rows(&paged)[0][0].starts_with("p01_baguette "));
}

#[test]
fn max_age_and_stale_while_revalidate_keep_fresh_slots_hits() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(
        dir.path(),
        &[
            "--debug",
            "--max-age",
            "30",
            "--stale-while-revalidate",
            "60",
            "client",
            "list",
            "list",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(found(&run), vec![5, 5]);
    assert_eq!(outcomes(&run), vec!["miss", "populated", "hit"]);
}

/// A flag clap rejects: a usage error (exit 2) whose first line names the
/// flag and the problem.
fn assert_flag_error(run: &Run, flag: &str, problem: &str) {
    assert_eq!(run.code, 2, "exit code; stderr: {}", run.stderr);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains(flag) && first.contains(problem),
        "stderr {:?} should name {flag:?} and {problem:?}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn bad_tuning_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_flag_error(
        &cli(d, &["--master-ipp", "0", "product", "list"]),
        "--master-ipp",
        "at least 1, not '0'",
    );
    assert_flag_error(
        &cli(d, &["--master-ipp", "-4", "product", "list"]),
        "--master-ipp",
        "at least 1, not '-4'",
    );
    assert_flag_error(
        &cli(d, &["--max-age", "-1", "product", "list"]),
        "--max-age",
        "'-1' is negative",
    );
    assert_flag_error(
        &cli(d, &["--max-age", "NaN", "product", "list"]),
        "--max-age",
        "not a finite number of seconds",
    );
    assert_flag_error(
        &cli(d, &["--max-age", "inf", "product", "list"]),
        "--max-age",
        "not a finite number of seconds",
    );
    assert_flag_error(
        &cli(d, &["--max-age", "soon", "product", "list"]),
        "--max-age",
        "not a number of seconds",
    );
    assert_flag_error(
        &cli(
            d,
            &[
                "--max-age",
                "1",
                "--stale-while-revalidate",
                "-0.5",
                "product",
                "list",
            ],
        ),
        "--stale-while-revalidate",
        "'-0.5' is negative",
    );
    // --stale-while-revalidate needs --max-age.
    let run = cli(d, &["--stale-while-revalidate", "5", "product", "list"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("required arguments were not provided")
            && run.stderr.contains("--max-age <SECS>"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_bad_set_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Every command is checked first: the good set before the bad one does
    // not run.
    assert_one_error_line(
        &cli(
            d,
            &[
                "product",
                "set",
                "p01_baguette",
                r#"{"price": 5}"#,
                "set",
                "p02_brioche",
                "{not json",
            ],
        ),
        "invalid JSON for set",
    );
    assert_one_error_line(
        &cli(
            d,
            &["product", "set", "p01_baguette", r#"{"price": 5}"#, "set"],
        ),
        "'set' needs an id and a JSON object",
    );
    assert_one_error_line(
        &cli(d, &["product", "set", "p01_baguette"]),
        "'set' needs a JSON object after the id",
    );
    assert_one_error_line(
        &cli(d, &["product", "set", "p01_baguette", "[1]"]),
        "invalid JSON for set: expected an object",
    );
    assert_one_error_line(
        &cli(d, &["product", "set", "p01_baguette", "{}"]),
        "'set' needs at least one field to change",
    );
    assert_one_error_line(
        &cli(
            d,
            &["product", "set", "p01_baguette", r#"{"price": "cheap"}"#],
        ),
        "\"cheap\" is not a valid int for product.price",
    );
    assert_one_error_line(
        &cli(
            d,
            &["product", "set", "p01_baguette", r#"{"colour": "red"}"#],
        ),
        "product has no column 'colour'",
    );
    assert_one_error_line(
        &cli(d, &["product", "set", "no_such_id", r#"{"price": 5}"#]),
        "could not update product 'no_such_id'",
    );
    let check = cli(d, &["product", "get", "p01_baguette", "list"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(check.stdout.contains("\"price\": 180,"), "{}", check.stdout);
    assert_eq!(found(&check), vec![1, 12]);
    assert!(!check.stdout.contains("no_such_id"));
}

#[test]
fn set_through_the_outbox_is_pending_then_applied() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let outbox = outbox.to_str().unwrap();
    let run = cli(
        dir.path(),
        &[
            "--outbox",
            outbox,
            "product",
            "set",
            "p02_brioche",
            r#"{"price": 7, "inventory_stock": 1}"#,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("Updated product 'p02_brioche' locally: pending"),
        "{}",
        run.stdout
    );
    // The run applied it before it ended: a run without the outbox reads
    // it from the master.
    let check = cli(dir.path(), &["product", "get", "p02_brioche"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(check.stdout.contains("\"price\": 7,"), "{}", check.stdout);
    assert!(
        check.stdout.contains("\"inventory_stock\": 1,"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("\"calories\": 340,"),
        "{}",
        check.stdout
    );
}
