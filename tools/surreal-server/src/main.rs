//! SurrealDB 3.3.5 with in-memory storage, as a plain binary.
//!
//! Started by `.ci/surreal.sh` as
//! `surreal-server start --bind 127.0.0.1:8000 --user root --pass root memory`.
#![recursion_limit = "256"]

fn main() -> std::process::ExitCode {
    surrealdb_server::init(surrealdb_server::core::CommunityComposer())
}
