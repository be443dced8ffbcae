//! `surreal`: the SurrealDB server and CLI of the `surrealdb-server` crate, as its own binary
//! does it (`surreal start --username … --password … surrealkv://PATH`).

// The server's futures are deep (as in the crate itself).
#![recursion_limit = "256"]

fn main() -> std::process::ExitCode {
    surrealdb_server::init(surrealdb_core::CommunityComposer())
}
