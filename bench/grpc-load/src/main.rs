//! `grpc-load`: drive a V2 `ModelInfer` endpoint from N connections, each with one request
//! in flight (closed loop, like `wrk`), for a bounded time and count, and print req/s and
//! latency percentiles as one JSON line. The same client drives every server compared, so
//! the ratio between them is fair.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use mooring_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mooring_proto::inference::model_infer_request::InferInputTensor;
use mooring_proto::inference::{InferTensorContents, ModelInferRequest};
use tonic::transport::{Channel, Endpoint};

#[derive(Parser, Debug)]
#[command(about = "Bounded closed-loop load on GRPCInferenceService/ModelInfer")]
struct Args {
    /// Server address, e.g. http://127.0.0.1:8081.
    #[arg(long, env = "GRPC_LOAD_URL")]
    url: String,
    /// Model to call.
    #[arg(long, env = "GRPC_LOAD_MODEL", default_value = "iris-classifier")]
    model: String,
    /// Input tensor name.
    #[arg(long, env = "GRPC_LOAD_INPUT", default_value = "input")]
    input: String,
    /// HTTP/2 connections, each with one request in flight.
    #[arg(long, short, env = "GRPC_LOAD_CONNECTIONS", default_value_t = 16)]
    connections: usize,
    /// Measured duration in seconds (after warm-up).
    #[arg(long, short, env = "GRPC_LOAD_DURATION", default_value_t = 10)]
    duration: u64,
    /// Warm-up in seconds, not measured.
    #[arg(long, env = "GRPC_LOAD_WARMUP", default_value_t = 2)]
    warmup: u64,
    /// Stop after this many measured requests in all, whatever the duration.
    #[arg(long, env = "GRPC_LOAD_MAX_REQUESTS", default_value_t = 5_000_000)]
    max_requests: u64,
    /// Send the input as `raw_input_contents` instead of typed contents.
    #[arg(long, env = "GRPC_LOAD_RAW")]
    raw: bool,
    /// A label for the JSON line (e.g. the server's name).
    #[arg(long, env = "GRPC_LOAD_LABEL", default_value = "")]
    label: String,
}

fn request(args: &Args) -> ModelInferRequest {
    let row = [5.1f32, 3.5, 1.4, 0.2];
    let mut input = InferInputTensor {
        name: args.input.clone(),
        datatype: "FP32".into(),
        shape: vec![1, 4],
        ..Default::default()
    };
    let mut req = ModelInferRequest {
        model_name: args.model.clone(),
        ..Default::default()
    };
    if args.raw {
        req.raw_input_contents = vec![row.iter().flat_map(|v| v.to_le_bytes()).collect()];
    } else {
        input.contents = Some(InferTensorContents {
            fp32_contents: row.to_vec(),
            ..Default::default()
        });
    }
    req.inputs = vec![input];
    req
}

struct WorkerResult {
    histogram: Histogram<u64>,
    errors: u64,
    /// Calls answered, warm-up included: what the server's CPU time over the whole run is
    /// divided by.
    sent: u64,
}

async fn worker(
    channel: Channel,
    req: ModelInferRequest,
    measure_from: Instant,
    stop_at: Instant,
    budget: u64,
) -> anyhow::Result<WorkerResult> {
    let mut client = GrpcInferenceServiceClient::new(channel);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut measured = 0;
    let mut sent = 0;
    loop {
        let t0 = Instant::now();
        if t0 >= stop_at || measured >= budget {
            break;
        }
        let outcome = client.model_infer(req.clone()).await;
        sent += 1;
        if t0 >= measure_from {
            measured += 1;
            match outcome {
                Ok(_) => histogram.record(t0.elapsed().as_micros().max(1) as u64)?,
                Err(_) => errors += 1,
            }
        }
    }
    Ok(WorkerResult {
        histogram,
        errors,
        sent,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.duration == 0 {
        bail!("--connections and --duration must be at least 1");
    }
    let req = request(&args);
    // Fail fast with the server's own error if the request is wrong.
    let endpoint = Endpoint::from_shared(args.url.clone())?.tcp_nodelay(true);
    GrpcInferenceServiceClient::new(endpoint.connect().await.context("connecting")?)
        .model_infer(req.clone())
        .await
        .context("first request failed")?;

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let stop_at = measure_from + Duration::from_secs(args.duration);
    let budget = args.max_requests.div_ceil(args.connections as u64);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        // One Channel per worker: a separate HTTP/2 connection, as wrk's connections are.
        let channel = endpoint.connect().await?;
        tasks.push(tokio::spawn(worker(
            channel,
            req.clone(),
            measure_from,
            stop_at,
            budget,
        )));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut errors, mut sent) = (0, 1);
    for t in tasks {
        let r = t.await??;
        total.add(r.histogram)?;
        errors += r.errors;
        sent += r.sent;
    }
    let elapsed = (Instant::now().min(stop_at) - measure_from).as_secs_f64();
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "label": args.label, "protocol": "grpc", "connections": args.connections,
            "requests": total.len(), "errors": errors, "sent": sent,
            "rps": total.len() as f64 / elapsed,
            "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "max_ms": total.max() as f64 / 1000.0,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn raw_and_typed_requests_carry_the_same_row() {
        let mut args = Args::parse_from(["grpc-load", "--url", "http://127.0.0.1:1"]);
        let typed = request(&args);
        args.raw = true;
        let raw = request(&args);
        let floats: Vec<f32> = raw.raw_input_contents[0]
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(
            typed.inputs[0].contents.as_ref().unwrap().fp32_contents,
            floats
        );
        assert!(raw.inputs[0].contents.is_none());
    }
}
