//! Measures the prompt guard's pattern and markup layers (prints, asserts nothing about
//! speed): the cost of one check of a short ordinary prompt and of a long one. The
//! benchmark over `bench/guard/prompts.tsv`, with the semantic layer, is `guard_eval`.
//!
//! `cargo run -p mooring-chat --release --example guard_check_cost`

use std::time::Instant;

use mooring_chat::guard::{Guard, GuardMode};

/// Ordinary questions, some with words attacks use too ("ignore", "previous").
const ORDINARY: &[&str] = &[
    "What is AI?",
    "What is the capital of France?",
    "How do I ignore whitespace changes in git diff?",
    "Can I ignore a failing test in Rust with #[ignore]?",
    "Explain the solar system to a ten-year-old.",
    "Summarise the previous chapter of Moby Dick.",
    "My previous message had a typo, the number is 42.",
    "Translate 'good morning' into Spanish.",
];

fn main() -> anyhow::Result<()> {
    let guard = Guard::new(GuardMode::Flag, 0, &[])?;
    // 16 000 characters: the default --guard-max-prompt-chars.
    for prompt in [ORDINARY[2].to_owned(), ORDINARY.join(" ").repeat(50)] {
        let rounds = 200;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(guard.check(&prompt)?);
        }
        let chars = prompt.chars().count();
        println!("check of {chars} chars: {:?}", started.elapsed() / rounds);
    }
    Ok(())
}
