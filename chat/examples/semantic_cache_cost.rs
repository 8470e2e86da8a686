//! Measures the semantic cache (prints, asserts nothing about speed): all-MiniLM-L6-v2's
//! embedding latency, and the cost of a lookup in a full scope of 1024 entries.
//!
//! `cargo run -p mooring-chat --release --example semantic_cache_cost -- [MODEL_DIR]`
//! (the all-MiniLM-L6-v2 directory; default `$MOORING_TEST_MINILM_DIR`, which `make test`
//! sets, else `.cache/models/all-MiniLM-L6-v2`)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mooring_chat::auth::KeyId;
use mooring_chat::cache::{
    CacheRequest, DEFAULT_SIMILARITY_THRESHOLD, Embedder, MiniLmEmbedder, SemanticCache,
};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("MOORING_TEST_MINILM_DIR").ok())
        .map_or_else(
            || PathBuf::from(".cache/models/all-MiniLM-L6-v2"),
            PathBuf::from,
        );
    let embedder = Arc::new(MiniLmEmbedder::load(&dir)?);

    let prompts: Vec<String> = (0..50)
        .map(|i| format!("Question number {i}: how do I configure service {i}?"))
        .collect();
    let started = Instant::now();
    let embeddings = prompts
        .iter()
        .map(|p| embedder.embed(p))
        .collect::<Result<Vec<_>, _>>()?;
    let per_embed = started.elapsed() / prompts.len() as u32;
    println!(
        "embed: {per_embed:?} per prompt (mean of {})",
        prompts.len()
    );

    let entries = 1024;
    let cache = SemanticCache::new(
        embedder as Arc<dyn Embedder>,
        DEFAULT_SIMILARITY_THRESHOLD,
        entries,
        None,
    );
    let key = KeyId::new("alice");
    let request = CacheRequest {
        key: &key,
        model: "m",
        prompt: "",
        session_id: None,
        params: "{}",
    };
    for i in 0..entries {
        // Distinct unit vectors: rotate the measured embeddings.
        let mut v = embeddings[i % embeddings.len()].clone();
        v.rotate_left(i / embeddings.len() + 1);
        cache.insert(&request, v, i);
    }
    let rounds = 2000;
    let started = Instant::now();
    let mut found = 0;
    for i in 0..rounds {
        found += usize::from(
            cache
                .lookup_embedding(&request, &embeddings[i % embeddings.len()])
                .is_some(),
        );
    }
    let per_lookup = started.elapsed() / rounds as u32;
    println!("lookup over {entries} entries x 384: {per_lookup:?} ({found}/{rounds} hits)");
    Ok(())
}
