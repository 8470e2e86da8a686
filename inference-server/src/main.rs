//! The `inference-server` binary: `serve`, `batch` and `drift`.
#![forbid(unsafe_code)]

use clap::Parser;
use inference_server::config::{Cli, Command};
use inference_server::{batch_cmd, init_logging, serve, serve_extras};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => run_serve(args).await,
        Command::Batch(args) => batch_cmd::run(args)
            .await
            .map(|s| {
                eprintln!(
                    "batch: {} rows, {} predicted, {} failed",
                    s.rows, s.predicted, s.failed
                );
            })
            .map_err(anyhow::Error::from),
        // The verdict is in the result file and the reports; any verdict exits 0.
        Command::Drift(args) => mooring_drift::job::run(args)
            .await
            .map(|report| {
                eprintln!(
                    "drift: {:?}: drifted share {:.2} (threshold {}), {} current vs {} reference samples",
                    report.verdict,
                    report.drift_share,
                    report.drift_share_threshold,
                    report.samples,
                    report.reference_samples
                );
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let report = inference_server::error_report(e.as_ref());
            tracing::error!("{report}");
            eprintln!("inference-server: {report}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_serve(args: inference_server::config::ServeArgs) -> anyhow::Result<()> {
    let (extras, running) = serve_extras::build(&args).await?;
    let served = serve::serve(args, extras).await;
    // Flush the prediction log whether the servers stopped cleanly or not.
    running.stop().await;
    Ok(served?)
}
