//! `drift` end to end: logged traffic through the logger, the bundled iris registry's
//! reference.csv, and the verdict, result file and reports.

use std::path::{Path, PathBuf};

use clap::Parser;
use mooring_drift::job::{DriftArgs, run};
use mooring_drift::log::{LoggerOptions, PredictionLogger, PredictionRecord};
use mooring_drift_report::DriftVerdict;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    drift: DriftArgs,
}

const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

fn registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Reference rows of the bundled model (features + target).
fn reference_rows() -> Vec<(Vec<f64>, i64)> {
    let text = std::fs::read_to_string(registry().join("iris-classifier/2/reference.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|c| c.parse().unwrap()).collect();
            (v[..4].to_vec(), v[4] as i64)
        })
        .collect()
}

/// A small deterministic generator (xorshift), so the test data never changes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Log `n` rows resampled from the reference, with `shift` applied to the features.
async fn log_traffic(sink: &str, n: usize, seed: u64, shift: impl Fn(&mut [f64])) {
    let rows = reference_rows();
    let names: Vec<String> = FEATURES.iter().map(|s| s.to_string()).collect();
    let (logger, writer) = PredictionLogger::start(sink, LoggerOptions::default())
        .await
        .unwrap();
    let mut rng = Rng(seed);
    for i in 0..n {
        let (x, class) = &rows[(rng.next() * rows.len() as f64) as usize];
        let mut x = x.clone();
        for v in x.iter_mut() {
            *v += (rng.next() - 0.5) * 0.1; // measurement noise, as in real traffic
        }
        shift(&mut x);
        let mut rec = PredictionRecord::now("iris-classifier", "2", &format!("r{i}"), "api_v1")
            .with_features(&names, &x);
        rec.prediction.class_index = Some(*class);
        assert!(logger.log(rec));
    }
    logger.shutdown().await;
    writer.await.unwrap();
}

fn args(sink: &str, extra: &[&str]) -> DriftArgs {
    let reg = registry();
    let cache = std::env::temp_dir().join("mooring-drift-test-cache");
    let mut argv = vec![
        "drift",
        "--sink",
        sink,
        "--model",
        "iris-classifier",
        "--version",
        "2",
        "--registry",
        reg.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    Cli::parse_from(argv).drift
}

#[tokio::test]
async fn verdict_flips_from_no_drift_to_drift_with_reports() {
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("file://{}/logs", dir.path().display());
    let result = dir.path().join("result.json");
    let result_s = result.to_str().unwrap().to_string();

    // Too few samples first.
    log_traffic(&sink, 50, 1, |_| {}).await;
    let r = run(args(&sink, &["--result-file", &result_s]))
        .await
        .unwrap();
    assert_eq!(r.verdict, DriftVerdict::InsufficientData);

    log_traffic(&sink, 450, 2, |_| {}).await;
    let r = run(args(&sink, &["--result-file", &result_s]))
        .await
        .unwrap();
    assert_eq!(r.verdict, DriftVerdict::NoDrift, "{r:?}");
    assert_eq!(r.samples, 500);
    assert_eq!(r.features.len(), 4);
    let prediction = r
        .prediction
        .as_ref()
        .expect("prediction drift from the target column");
    assert!(!prediction.drifted);

    // Shifted traffic: +1.5 on petal_length, ×1.3 on sepal_width; judge the newest 500.
    log_traffic(&sink, 500, 3, |x| {
        x[2] += 1.5;
        x[1] *= 1.3;
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = run(args(
        &sink,
        &["--result-file", &result_s, "--max-samples", "500"],
    ))
    .await
    .unwrap();
    assert_eq!(r.verdict, DriftVerdict::Drift, "{r:?}");
    let drifted: Vec<&str> = r
        .features
        .iter()
        .filter(|f| f.result.drifted)
        .map(|f| f.name.as_str())
        .collect();
    assert!(
        drifted.contains(&"petal_length") && drifted.contains(&"sepal_width"),
        "{drifted:?}"
    );

    let written = std::fs::read_to_string(&result).unwrap();
    assert!(written.len() < 4096);
    let on_disk: mooring_drift_report::DriftReport = serde_json::from_str(&written).unwrap();
    assert_eq!(on_disk.verdict, r.verdict);
    assert_eq!(on_disk.features.len(), r.features.len());
    let html_uri = r.report_uri.expect("report written");
    let html_path = html_uri.strip_prefix("file://").unwrap();
    let html = std::fs::read_to_string(html_path).unwrap();
    assert!(html.contains("<svg") && html.contains("petal_length") && html.contains("Drift"));
    let json = std::fs::read_to_string(Path::new(html_path).with_file_name("report.json")).unwrap();
    assert!(json.contains("\"histogram\""));
}

#[tokio::test]
async fn a_missing_reference_fails_the_check_with_a_failed_result() {
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("file://{}", dir.path().display());
    log_traffic(&sink, 10, 4, |_| {}).await;
    let result = dir.path().join("result.json");
    let mut a = args(&sink, &["--result-file", result.to_str().unwrap()]);
    a.registry = None;
    a.reference = Some(dir.path().join("nope.csv").display().to_string());
    let err = run(a).await.unwrap_err().to_string();
    assert!(err.contains("nope.csv"), "{err}");
    let failed: mooring_drift_report::DriftReport =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(failed.verdict, DriftVerdict::Failed);
    assert!(failed.message.unwrap().contains("nope.csv"));
}

#[tokio::test]
async fn many_features_are_truncated_to_fit_the_termination_message() {
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("file://{}/logs", dir.path().display());
    let names: Vec<String> = (0..120)
        .map(|i| format!("a_rather_long_feature_name_number_{i:03}"))
        .collect();
    let mut csv = names.join(",") + "\n";
    for r in 0..200 {
        csv += &names
            .iter()
            .enumerate()
            .map(|(i, _)| ((r * 7 + i) % 40).to_string())
            .collect::<Vec<_>>()
            .join(",");
        csv += "\n";
    }
    let reference = dir.path().join("ref.csv");
    std::fs::write(&reference, csv).unwrap();
    let (logger, writer) = PredictionLogger::start(&sink, LoggerOptions::default())
        .await
        .unwrap();
    for r in 0..200 {
        let x: Vec<f64> = (0..names.len())
            .map(|i| ((r * 3 + i) % 40) as f64)
            .collect();
        logger.log(PredictionRecord::now("wide", "1", "r", "api_v1").with_features(&names, &x));
    }
    logger.shutdown().await;
    writer.await.unwrap();
    let result = dir.path().join("result.json");
    let a = Cli::parse_from([
        "drift",
        "--sink",
        &sink,
        "--model",
        "wide",
        "--reference",
        reference.to_str().unwrap(),
        "--result-file",
        result.to_str().unwrap(),
    ])
    .drift;
    let r = run(a).await.unwrap();
    let written = std::fs::read_to_string(&result).unwrap();
    assert!(written.len() <= 3800, "{} bytes", written.len());
    assert!(r.features.len() < 120);
    let message = r.message.unwrap();
    assert!(
        message.contains(&format!(
            "{} of 120 features omitted",
            120 - r.features.len()
        )),
        "{message}"
    );
}

/// An `s3://` sink on a real S3-compatible server: the check reads the logs there and puts
/// its reports beside them.
#[tokio::test]
async fn drift_reads_an_s3_sink_and_writes_the_report_beside_it() {
    let endpoint = std::env::var("MOORING_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| panic!("MOORING_TEST_S3_ENDPOINT is not set (an S3-compatible server such as moto_server); run `make test`"));
    let bucket = std::env::var("MOORING_TEST_S3_BUCKET")
        .unwrap_or_else(|_| panic!("MOORING_TEST_S3_BUCKET is not set (an existing bucket on MOORING_TEST_S3_ENDPOINT); run `make test`"));
    let s3 = mooring_drift::log::S3Options {
        endpoint: Some(endpoint.clone()),
        ..Default::default()
    };
    let prefix = format!("cli-{}", mooring_drift::log::record::now_ms());
    let sink = format!("s3://{bucket}/{prefix}");
    let rows = reference_rows();
    let names: Vec<String> = FEATURES.iter().map(|s| s.to_string()).collect();
    let opts = LoggerOptions {
        s3: s3.clone(),
        ..Default::default()
    };
    let (logger, writer) = PredictionLogger::start(&sink, opts).await.unwrap();
    for (i, (x, class)) in rows.iter().cycle().take(240).enumerate() {
        let mut rec = PredictionRecord::now("iris-classifier", "2", &format!("r{i}"), "grpc_v2")
            .with_features(&names, x);
        rec.prediction.class_index = Some(*class);
        logger.log(rec);
    }
    logger.shutdown().await;
    writer.await.unwrap();
    let r = run(args(&sink, &["--s3-endpoint", &endpoint]))
        .await
        .unwrap();
    assert_eq!(r.verdict, DriftVerdict::NoDrift, "{r:?}");
    assert_eq!(r.samples, 240);
    let uri = r.report_uri.unwrap();
    assert!(
        uri.starts_with(&format!("s3://{bucket}/{prefix}/reports/"))
            && uri.ends_with("report.html"),
        "{uri}"
    );
    let store = mooring_drift::log::SinkUrl::object_store(&bucket, &s3).unwrap();
    use object_store::ObjectStoreExt;
    let key = uri.strip_prefix(&format!("s3://{bucket}/")).unwrap();
    let html = store
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&html).contains("<svg"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the bundled registry with a version 3 trained on shifted data (petal_length
/// +1.5, sepal_width ×1.3: today's traffic in these tests); `challenger` names it.
async fn registry_with_shifted_challenger(dir: &Path) -> PathBuf {
    let root = dir.join("registry");
    copy_dir(
        &registry().join("iris-classifier"),
        &root.join("iris-classifier"),
    );
    let v3 = dir.join("v3");
    std::fs::create_dir_all(&v3).unwrap();
    for file in ["model.onnx", "signature.json"] {
        std::fs::copy(
            registry().join("iris-classifier/2").join(file),
            v3.join(file),
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(registry().join("iris-classifier/2/reference.csv")).unwrap();
    let mut lines = text.lines();
    let mut shifted = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let mut v: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
        v[2] += 1.5;
        v[1] *= 1.3;
        let class = v[4] as i64;
        let cells: Vec<String> = v[..4].iter().map(|x| format!("{x:.4}")).collect();
        shifted += &format!("{},{class}\n", cells.join(","));
    }
    std::fs::write(v3.join("reference.csv"), shifted).unwrap();
    let registry = mooring_registry::connect(&mooring_registry::RegistryConfig::new(
        root.to_str().unwrap(),
    ))
    .unwrap();
    let version = registry.register("iris-classifier", &v3).await.unwrap();
    registry
        .set_alias("iris-classifier", "challenger", &version.version)
        .await
        .unwrap();
    root
}

/// The challenger gate: today's (shifted) traffic drifts from the served version's
/// reference but not from the challenger's, which was trained on data like it.
#[tokio::test]
async fn challenger_gate_checks_the_window_against_the_challengers_reference() {
    let dir = tempfile::tempdir().unwrap();
    let root = registry_with_shifted_challenger(dir.path()).await;
    let sink = format!("file://{}/logs", dir.path().display());
    log_traffic(&sink, 500, 3, |x| {
        x[2] += 1.5;
        x[1] *= 1.3;
    })
    .await;
    let result = dir.path().join("result.json");
    let mut a = args(
        &sink,
        &[
            "--challenger-alias",
            "challenger",
            "--result-file",
            result.to_str().unwrap(),
        ],
    );
    a.registry = Some(root.display().to_string());
    let r = run(a.clone()).await.unwrap();
    assert_eq!(r.verdict, DriftVerdict::Drift, "{r:?}");
    let gate = r.challenger.as_ref().expect("the gate ran");
    assert_eq!(gate.alias, "challenger");
    assert_eq!(gate.version.as_deref(), Some("3"));
    assert_eq!(gate.verdict, DriftVerdict::NoDrift, "{gate:?}");
    assert!(gate.drift_share < 0.5);
    // Both results reach the termination message.
    let written: mooring_drift_report::DriftReport =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(written.challenger.as_ref(), Some(gate));

    // The gate is the ordinary check (whose statistics are the SciPy-golden ones) run against
    // the challenger's reference: the same share as checking against that file directly.
    let mut direct = a.clone();
    direct.challenger_alias = None;
    direct.result_file = None;
    direct.reference = Some(
        root.join("iris-classifier/3/reference.csv")
            .display()
            .to_string(),
    );
    let same = run(direct).await.unwrap();
    assert_eq!(same.verdict, gate.verdict);
    assert_eq!(same.drift_share, gate.drift_share);

    // The served version's own reference as the "challenger": it drifts like the check.
    a.challenger_alias = Some("production".into());
    let r = run(a.clone()).await.unwrap();
    let gate = r.challenger.unwrap();
    assert_eq!(gate.version.as_deref(), Some("1"));
    assert_eq!(gate.verdict, DriftVerdict::Drift);
    assert!(
        gate.drifted_features.contains(&"petal_length".to_string()),
        "{gate:?}"
    );

    // A missing alias fails the gate, not the check.
    a.challenger_alias = Some("staging".into());
    let r = run(a).await.unwrap();
    assert_eq!(r.verdict, DriftVerdict::Drift);
    let gate = r.challenger.unwrap();
    assert_eq!((gate.verdict, gate.version), (DriftVerdict::Failed, None));
    assert!(gate.message.unwrap().contains("staging"));
}
