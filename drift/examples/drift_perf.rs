//! Benchmark of the drift check (not a test): loading the prediction log vs the statistics.
//!
//! `bench/drift-perf/run.sh` generates the data and runs this in release mode:
//! `drift_perf <log dir> <reference.csv>`.

use std::time::Instant;

/// User + system CPU seconds of this process so far, all threads (from /proc/self/stat):
/// on a busy machine the wall clock says more about the neighbours than about the work.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 2..].split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

use mooring_drift::check::{CheckConfig, Dataset, current_columns, run_check};
use mooring_drift::log::{ReadQuery, S3Options, read_columns};
use mooring_drift::stats::{Column, TestChoice, TestKind, run_test};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(logs), Some(reference)) = (args.next(), args.next()) else {
        eprintln!("usage: drift_perf <log dir> <reference.csv>");
        std::process::exit(2);
    };
    let t = Instant::now();
    let bytes = std::fs::read(&reference).expect("read the reference CSV");
    let reference = Dataset::from_csv(&bytes, &reference).expect("parse the reference CSV");
    let ref_time = t.elapsed();

    let (t, cpu) = (Instant::now(), cpu_seconds());
    let query = ReadQuery {
        model: "perf".into(),
        ..Default::default()
    };
    let (records, stats) = read_columns(&format!("file://{logs}"), &query, &S3Options::default())
        .await
        .expect("read the log");
    let (load_time, load_cpu) = (t.elapsed(), cpu_seconds() - cpu);

    // The whole check after loading: column extraction + sorting + tests + histograms.
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let report = run_check(
        "perf",
        None,
        &records,
        stats.clone(),
        &reference,
        &CheckConfig::default(),
    )
    .expect("check runs");
    let (check_time, check_cpu) = (t.elapsed(), cpu_seconds() - cpu);

    // The statistics alone on prepared (sorted) columns, per test.
    let names: Vec<String> = reference.columns.keys().cloned().collect();
    let (mut columns, _) = current_columns(&records);
    let current: Vec<Column> = names
        .iter()
        .map(|n| columns.remove(n).unwrap_or(Column::Numeric(Vec::new())))
        .collect();
    println!(
        "rows: {} current x {} features, reference {} rows",
        records.len(),
        names.len(),
        reference.rows
    );
    println!("load reference.csv: {:.3} s", ref_time.as_secs_f64());
    println!(
        "load prediction log ({} files, {} lines): {:.3} s (CPU {:.2} s)",
        stats.files,
        stats.lines,
        load_time.as_secs_f64(),
        load_cpu
    );
    println!(
        "check after loading (columns + default tests + histograms): {:.3} s (CPU {:.2} s)",
        check_time.as_secs_f64(),
        check_cpu
    );
    println!(
        "load + check: {:.3} s (CPU {:.2} s)",
        (load_time + check_time).as_secs_f64(),
        load_cpu + check_cpu
    );
    for test in [
        TestKind::Wasserstein,
        TestKind::Ks,
        TestKind::Psi,
        TestKind::Jensenshannon,
    ] {
        let t = Instant::now();
        for (name, cur) in names.iter().zip(&current) {
            let choice = TestChoice {
                test,
                threshold: test.default_threshold(),
            };
            run_test(choice, &reference.columns[name], cur).expect("test runs");
        }
        println!(
            "  {test:<14} on all {} features (sorted columns): {:.3} s",
            names.len(),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "verdict: {:?}, drifted {} of {}",
        report.verdict, report.drifted_features, report.tested_features
    );
    for f in &report.features {
        println!(
            "  {:<4} {} = {:.5} drifted={}",
            f.name,
            f.outcome.test,
            f.outcome.score(),
            f.outcome.drifted
        );
    }
}
