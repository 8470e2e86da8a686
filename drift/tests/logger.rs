//! The prediction logger end to end: file sink, S3 sink (a real S3-compatible server), and
//! the never-block guarantee.

use std::time::Duration;

use mooring_drift::log::{
    LoggerOptions, PredictionLogger, PredictionRecord, ReadQuery, S3Options, read_records,
};

fn record(i: usize) -> PredictionRecord {
    let names = vec!["x".to_string(), "y".to_string()];
    let mut r = PredictionRecord::now("iris", "1", &format!("req-{i}"), "api_v1")
        .with_features(&names, &[i as f64, (i % 7) as f64]);
    r.prediction.class_index = Some((i % 3) as i64);
    r
}

fn query() -> ReadQuery {
    ReadQuery {
        model: "iris".into(),
        version: Some("1".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn file_sink_at_a_normal_rate_drops_nothing_and_shutdown_flushes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let opts = LoggerOptions {
        queue_capacity: 256,
        flush_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (logger, writer) = PredictionLogger::start(&url, opts).await.unwrap();
    for batch in 0..20 {
        for i in 0..100 {
            assert!(logger.log(record(batch * 100 + i)));
        }
        // A normal rate: the writer keeps up between bursts.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The flush interval is an hour, so only shutdown can have written the tail.
    logger.shutdown().await;
    writer.await.unwrap();
    let m = logger.metrics();
    assert_eq!(m.dropped.get(), 0);
    assert_eq!(m.logged.get(), 2000);
    assert_eq!(m.written.get(), 2000);
    assert_eq!(m.write_errors.get(), 0);
    let (records, stats) = read_records(&url, &query(), &S3Options::default())
        .await
        .unwrap();
    assert_eq!(records.len(), 2000);
    assert_eq!(stats.truncated_lines, 0);
    // Logging after shutdown is refused and counted, not a panic.
    assert!(!logger.log(record(0)));
    assert_eq!(m.dropped.get(), 1);
}

#[tokio::test]
async fn files_rotate_by_size_and_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let opts = LoggerOptions {
        buffer_bytes: 1024,
        max_file_bytes: 4096,
        writer_id: Some("pod-a".into()),
        ..Default::default()
    };
    let (logger, writer) = PredictionLogger::start(&url, opts).await.unwrap();
    for i in 0..500 {
        logger.log(record(i));
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    logger.shutdown().await;
    writer.await.unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names.len() > 3,
        "expected several rotated files, got {names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("predictions-pod-a-") && n.ends_with(".jsonl")),
        "{names:?}"
    );
    let (records, _) = read_records(&url, &query(), &S3Options::default())
        .await
        .unwrap();
    assert_eq!(records.len(), 500);
}

#[tokio::test]
async fn sampling_keeps_the_requested_share() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let opts = LoggerOptions {
        sample_rate: 0.25,
        ..Default::default()
    };
    let (logger, writer) = PredictionLogger::start(&url, opts).await.unwrap();
    for i in 0..1000 {
        logger.log(record(i));
    }
    logger.shutdown().await;
    writer.await.unwrap();
    assert_eq!(logger.metrics().logged.get(), 250);
}

#[tokio::test]
async fn invalid_options_name_the_field() {
    let opts = LoggerOptions {
        sample_rate: 1.5,
        ..Default::default()
    };
    let err = PredictionLogger::start("file:///tmp/x", opts)
        .await
        .err()
        .expect("rejected");
    assert!(err.to_string().contains("sample_rate"), "{err}");
    let err = PredictionLogger::start("ftp://x", LoggerOptions::default())
        .await
        .err()
        .expect("rejected");
    assert!(err.to_string().contains("ftp://x"), "{err}");
}

/// A sink that never answers: an S3 endpoint that accepts connections and stays silent.
/// `log()` must keep returning at once; the queue fills and the drop counter rises.
#[tokio::test]
async fn a_stalled_sink_makes_log_drop_instead_of_block() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock); // never read, never answer
        }
    });
    let opts = LoggerOptions {
        queue_capacity: 16,
        buffer_bytes: 1, // write after every record, so the writer is stuck at once
        s3: S3Options {
            endpoint: Some(format!("http://{addr}")),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            region: Some("us-east-1".into()),
        },
        ..Default::default()
    };
    let (logger, writer) = PredictionLogger::start("s3://stalled/preds", opts)
        .await
        .unwrap();
    let mut refused = 0;
    for i in 0..1000 {
        if !logger.log(record(i)) {
            refused += 1;
        }
        if i % 100 == 0 {
            tokio::task::yield_now().await; // let the writer take its first record and stall
        }
    }
    let m = logger.metrics();
    assert!(m.dropped.get() > 900, "dropped {}", m.dropped.get());
    assert_eq!(m.dropped.get(), refused);
    assert_eq!(m.logged.get() + m.dropped.get(), 1000);
    assert_eq!(m.written.get(), 0);
    writer.abort();
    silent.abort();
}

fn s3_env() -> (String, String) {
    let endpoint = std::env::var("MOORING_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| panic!("MOORING_TEST_S3_ENDPOINT is not set (an S3-compatible server such as moto_server); run `make test`"));
    let bucket = std::env::var("MOORING_TEST_S3_BUCKET")
        .unwrap_or_else(|_| panic!("MOORING_TEST_S3_BUCKET is not set (an existing bucket on MOORING_TEST_S3_ENDPOINT); run `make test`"));
    (endpoint, bucket)
}

/// Two writers (two "replicas") share one S3 prefix; the reader sees both.
#[tokio::test]
async fn s3_sink_round_trips_through_a_real_s3_server() {
    let (endpoint, bucket) = s3_env();
    let s3 = S3Options {
        endpoint: Some(endpoint),
        ..Default::default()
    };
    let prefix = format!("test-{}", mooring_drift::log::record::now_ms());
    let url = format!("s3://{bucket}/{prefix}");
    for replica in ["a", "b"] {
        let opts = LoggerOptions {
            buffer_bytes: 2048,
            writer_id: Some(format!("pod-{replica}")),
            s3: s3.clone(),
            ..Default::default()
        };
        let (logger, writer) = PredictionLogger::start(&url, opts).await.unwrap();
        for i in 0..300 {
            logger.log(record(i));
        }
        logger.shutdown().await;
        writer.await.unwrap();
        assert_eq!(logger.metrics().write_errors.get(), 0);
        assert_eq!(logger.metrics().written.get(), 300);
    }
    let (records, stats) = read_records(&url, &query(), &s3).await.unwrap();
    assert_eq!(records.len(), 600);
    assert!(stats.files >= 2, "{stats:?}");
    let (limited, _) = read_records(
        &url,
        &ReadQuery {
            max_samples: Some(50),
            ..query()
        },
        &s3,
    )
    .await
    .unwrap();
    assert_eq!(limited.len(), 50);
}
