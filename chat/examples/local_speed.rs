//! Measures the local backend the way bench/chat-engine/run.sh compares it with llama-server:
//! decode speed and time to first token of one stream, time to first token of a session's
//! second turn against a cold prompt of the same length, and aggregate speed of 4 streams.
//!
//! `cargo run --release -p mooring-chat --example local_speed -- <model.gguf> [threads] [runs] [max_tokens]`
//!
//! Prints `key value` lines (milliseconds, tokens per second) for the script.

use std::time::{Duration, Instant};

use futures::StreamExt;
use mooring_chat::backend::local::{EngineOptions, LocalBackend, LocalOptions};
use mooring_chat::backend::{Backend, ChatMessage, GenerationRequest, Role, StreamEvent};

/// Leading words that make each cold prompt share (almost) nothing with the ones before it.
const OPENINGS: [&str; 8] = [
    "Please",
    "Kindly",
    "Now",
    "Today",
    "Quickly",
    "Carefully",
    "Simply",
    "Again",
];

/// One generation: time to first token, tokens/s after the first, tokens, the answer.
struct Timing {
    ttft: Duration,
    decode_tps: f64,
    tokens: u32,
    answer: String,
}

async fn run(backend: &LocalBackend, messages: Vec<ChatMessage>, max_tokens: u32) -> Timing {
    let request = GenerationRequest {
        messages,
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        seed: Some(1),
        stop: vec![],
    };
    let started = Instant::now();
    let mut stream = backend.generate(request).await.expect("the request starts");
    let mut first = None;
    let mut answer = String::new();
    while let Some(event) = stream.next().await {
        match event.expect("generation succeeds") {
            StreamEvent::Delta(text) => {
                first.get_or_insert_with(Instant::now);
                answer.push_str(&text);
            }
            StreamEvent::Done { usage, .. } => {
                let first = first.unwrap_or_else(Instant::now);
                let rest = first.elapsed().as_secs_f64();
                return Timing {
                    ttft: first - started,
                    decode_tps: f64::from(usage.completion_tokens.saturating_sub(1)) / rest,
                    tokens: usage.completion_tokens,
                    answer,
                };
            }
        }
    }
    panic!("the stream ended without Done");
}

fn story(opening: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(Role::System, format!("{opening} be a helpful assistant.")),
        ChatMessage::new(Role::User, "Write a short story about a lighthouse keeper."),
    ]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let gguf = args
        .next()
        .unwrap_or_else(|| ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let threads: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let max_tokens: u32 = args.next().map_or(Ok(128), |s| s.parse())?;
    // Between a session's answer and its next question (a person takes seconds to read and
    // type); bench/chat-engine/run.sh passes it, 0 sends the next turn at once.
    let pause = Duration::from_millis(std::env::var("PAUSE_MS").map_or(Ok(500), |v| v.parse())?);
    let backend = LocalBackend::load_with(
        LocalOptions {
            gguf: gguf.into(),
            model_name: "smollm2".into(),
            default_max_tokens: max_tokens,
            default_temperature: 0.0,
            // llama-server's default, so both generate the same text
            repeat_penalty: 1.0,
            queue: 8,
        },
        EngineOptions {
            threads,
            parallel: 4,
            cache_tokens: 8192,
            // As the server's --chat-flash-attention.
            flash_attention: std::env::var("MOORING_CHAT_FLASH_ATTENTION")
                .map_or(true, |v| v != "false"),
        },
    )?;
    // Warm-up (page in the weights).
    run(&backend, story("Warm"), 8).await;

    let mut ttft = Vec::new();
    let mut decode = Vec::new();
    for run_index in 0..runs {
        let t = run(
            &backend,
            story(OPENINGS[run_index % OPENINGS.len()]),
            max_tokens,
        )
        .await;
        ttft.push(ms(t.ttft));
        decode.push(t.decode_tps);
    }
    println!("cold_ttft_ms {:.1}", median(ttft));
    println!("decode_tps {:.1}", median(decode));

    // A session: turn 1, then turn 2 carrying turn 1 (as memory does); against the same
    // turn-2 prompt behind a different opening (no reusable prefix).
    let mut turn2 = Vec::new();
    let mut cold2 = Vec::new();
    for run_index in 0..runs {
        let opening = OPENINGS[(run_index + 3) % OPENINGS.len()];
        let mut messages = story(opening);
        let first = run(&backend, messages.clone(), 48).await;
        messages.push(ChatMessage::new(Role::Assistant, first.answer));
        messages.push(ChatMessage::new(Role::User, "Give it a title."));
        // The user reads the answer and types (here briefly; people take seconds).
        tokio::time::sleep(pause).await;
        turn2.push(ms(run(&backend, messages.clone(), 16).await.ttft));
        messages[0] = ChatMessage::new(
            Role::System,
            format!("Cold{run_index} be a helpful assistant."),
        );
        tokio::time::sleep(pause).await;
        cold2.push(ms(run(&backend, messages, 16).await.ttft));
    }
    println!("turn2_ttft_ms {:.1}", median(turn2));
    println!("turn2_cold_ttft_ms {:.1}", median(cold2));

    for streams in [1usize, 4] {
        let started = Instant::now();
        let all = futures::future::join_all(
            (0..streams).map(|i| run(&backend, story(&format!("S{streams}x{i}:")), max_tokens)),
        )
        .await;
        let tokens: u32 = all.iter().map(|t| t.tokens).sum();
        println!(
            "aggregate_tps_{streams} {:.1}",
            f64::from(tokens) / started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
