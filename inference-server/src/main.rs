//! The `inference-server` binary: `serve` and `batch`.
#![forbid(unsafe_code)]

use clap::Parser;
use inference_server::config::{Cli, Command};
use inference_server::{batch_cmd, init_logging, serve};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args, serve::Extras::default())
            .await
            .map_err(anyhow::Error::from),
        Command::Batch(args) => batch_cmd::run(args)
            .await
            .map(|s| {
                eprintln!(
                    "batch: {} rows, {} predicted, {} failed",
                    s.rows, s.predicted, s.failed
                );
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("inference-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
