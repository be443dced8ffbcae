//! The `vmauto` binary: parse the command line and hand over to the library.

use clap::Parser;

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
