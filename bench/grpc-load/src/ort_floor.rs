//! `ort-floor`: what one model call costs with nothing around it — the iris model through
//! the server's own ONNX Runtime backend (tensor in, tensors out), one row per call, on this
//! thread. The serving benchmark prints it beside the server's CPU per request: the
//! difference is what HTTP, gRPC, validation, queueing and metrics add.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use inference_server::backend::Backend;
use inference_server::backend::ort::OrtBackend;
use inference_server::tensor::{Tensor, TensorData};
use mooring_registry::Signature;

#[derive(Parser, Debug)]
#[command(about = "CPU time of one bare model call (the floor under a served request)")]
struct Args {
    /// A model version directory holding model.onnx and signature.json.
    #[arg(
        long,
        env = "ORT_FLOOR_MODEL_DIR",
        default_value = "models/iris-classifier/1"
    )]
    model_dir: PathBuf,
    /// Measured calls (after 1,000 not measured).
    #[arg(long, env = "ORT_FLOOR_CALLS", default_value_t = 200_000)]
    calls: u64,
}

/// User + system CPU seconds of this process so far (all threads), from /proc/self/stat.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat[stat.rfind(')').context("stat format")? + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ is 100 on every Linux architecture the server is built for.
    Ok(ticks as f64 / 100.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signature = Signature::from_json(&std::fs::read(args.model_dir.join("signature.json"))?)
        .map_err(anyhow::Error::msg)?;
    let mut backend = OrtBackend::load(&args.model_dir.join("model.onnx"), &signature)?;
    let row = || {
        vec![Tensor {
            name: signature.inputs[0].name.clone(),
            shape: vec![1, 4],
            data: TensorData::F32(vec![5.1, 3.5, 1.4, 0.2]),
        }]
    };
    for _ in 0..1000 {
        backend.run(row())?;
    }
    let (cpu, wall) = (cpu_seconds()?, Instant::now());
    for _ in 0..args.calls {
        backend.run(row())?;
    }
    let cpu = cpu_seconds()? - cpu;
    let wall = wall.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "label": "ort-floor", "calls": args.calls,
            "cpu_ms_per_call": cpu * 1e3 / args.calls as f64,
            "wall_ms_per_call": wall * 1e3 / args.calls as f64,
        })
    );
    Ok(())
}
