//! The drift demo without a server: logs normal, then shifted iris traffic through
//! `PredictionLogger` (exactly what `inference-server serve --prediction-log` does per
//! request) and runs the `drift` check after each phase.
//!
//! `bench/drift-demo/run.sh` uses the real server when it has `--prediction-log`, and this
//! otherwise: `drift_demo <models dir> <work dir> <version>`.

use clap::Parser;
use mooring_drift::cli::{DriftArgs, run};
use mooring_drift::log::{LoggerOptions, PredictionLogger, PredictionRecord};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    drift: DriftArgs,
}

const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn send(
    sink: &str,
    rows: &[(Vec<f64>, i64)],
    version: &str,
    n: usize,
    seed: u64,
    shifted: bool,
) {
    let names: Vec<String> = FEATURES.iter().map(|s| s.to_string()).collect();
    let (logger, writer) = PredictionLogger::start(sink, LoggerOptions::default())
        .await
        .expect("start the logger");
    let mut rng = Rng(seed);
    for i in 0..n {
        let (x, class) = &rows[(rng.next() * rows.len() as f64) as usize];
        let mut x: Vec<f64> = x.iter().map(|v| v + (rng.next() - 0.5) * 0.1).collect();
        if shifted {
            x[2] += 1.5; // petal_length + 1.5
            x[1] *= 1.3; // sepal_width × 1.3
        }
        let mut rec = PredictionRecord::now(
            "iris-classifier",
            version,
            &format!("demo-{seed}-{i}"),
            "api_v1",
        )
        .with_features(&names, &x);
        rec.prediction.class_index = Some(*class);
        logger.log(rec);
    }
    logger.shutdown().await;
    writer.await.expect("writer task");
    println!(
        "logged {n} {} requests",
        if shifted { "shifted" } else { "normal" }
    );
}

async fn check(models: &str, sink: &str, version: &str, work: &str, name: &str, since: &str) {
    let result = format!("{work}/{name}.json");
    let argv = [
        "drift",
        "--sink",
        sink,
        "--model",
        "iris-classifier",
        "--version",
        version,
        "--registry",
        models,
        "--cache-dir",
        &format!("{work}/cache"),
        "--since",
        since,
        "--result-file",
        &result,
        "--report-dir",
        &format!("{work}/reports"),
    ];
    let report = run(Cli::parse_from(argv).drift).await.expect("drift check");
    println!(
        "{name}: verdict {:?}, drift share {:.2}",
        report.verdict, report.drift_share
    );
    for f in &report.features {
        let score = f.result.p_value.unwrap_or(f.result.statistic);
        println!(
            "  {:<13} {:?} score {:.3e} drifted={}",
            f.name, f.result.test, score, f.result.drifted
        );
    }
    println!("  HTML report: {}", report.report_uri.unwrap_or_default());
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [models, work, version] = args.as_slice() else {
        eprintln!("usage: drift_demo <models dir> <work dir> <version>");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(format!("{models}/iris-classifier/{version}/reference.csv"))
        .expect("reference.csv");
    let rows: Vec<(Vec<f64>, i64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|c| c.parse().expect("number")).collect();
            (v[..4].to_vec(), v[4] as i64)
        })
        .collect();
    let sink = format!("file://{work}/logs");
    let start = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    send(&sink, &rows, version, 500, 1, false).await;
    check(models, &sink, version, work, "before", &start).await;
    let shift_start = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    send(&sink, &rows, version, 500, 2, true).await;
    check(models, &sink, version, work, "after", &shift_start).await;
}
