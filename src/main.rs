//! The `vmauto` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc instead of the system allocator: with the shared ingest benchmark (wrk, 64
/// connections, 30 s, release build) it took 23–35 % more webhooks a second at a lower p50,
/// for about the same memory per stored webhook.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = vmauto::cli::Cli::parse();
    match vmauto::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
