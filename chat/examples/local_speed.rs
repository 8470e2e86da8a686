//! Measures the local backend: time to first token and generation speed.
//!
//! `cargo run -p mooring-chat --example local_speed -- <model.gguf> [runs] [max_tokens]`
//! (candle's thread count: `CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else the cores)

use std::time::Instant;

use futures::StreamExt;
use mooring_chat::backend::local::{LocalBackend, LocalOptions};
use mooring_chat::backend::{Backend, ChatMessage, GenerationRequest, Role, StreamEvent};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let gguf = args
        .next()
        .unwrap_or_else(|| ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let runs: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let max_tokens: u32 = args.next().map_or(Ok(128), |s| s.parse())?;
    let started = Instant::now();
    let backend = LocalBackend::load(LocalOptions {
        gguf: gguf.into(),
        model_name: "smollm2".into(),
        default_max_tokens: max_tokens,
        default_temperature: 0.0,
        repeat_penalty: 1.1,
        queue: 1,
    })?;
    println!("load: {:.2} s", started.elapsed().as_secs_f64());
    for run in 0..runs {
        let request = GenerationRequest {
            messages: vec![ChatMessage::new(
                Role::User,
                "Write a short story about a lighthouse keeper.",
            )],
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            seed: Some(1),
            stop: vec![],
        };
        let started = Instant::now();
        let mut stream = backend.generate(request).await?;
        let mut first = None;
        while let Some(event) = stream.next().await {
            match event? {
                StreamEvent::Delta(_) => {
                    first.get_or_insert_with(Instant::now);
                }
                StreamEvent::Done { usage, .. } => {
                    let first = first.unwrap_or_else(Instant::now);
                    let ttft = first - started;
                    let rest = first.elapsed().as_secs_f64();
                    println!(
                        "run {run}: prompt {} tokens, time to first token {:.0} ms, {} tokens, {:.1} tokens/s after the first",
                        usage.prompt_tokens,
                        ttft.as_secs_f64() * 1000.0,
                        usage.completion_tokens,
                        f64::from(usage.completion_tokens.saturating_sub(1)) / rest
                    );
                }
            }
        }
    }
    Ok(())
}
