//! Exact and semantic cache behaviour with a deterministic stand-in embedder (the real
//! model's behaviour is in cache_semantic.rs): scoping by key, model and parameters,
//! sessions bypassing, TTL, bounds, counters, flags.

use clap::{CommandFactory, Parser};
use mooring_chat::auth::KeyId;
use mooring_chat::cache::{
    CacheArgs, CacheError, CacheRequest, CacheStats, Caches, EmbedError, Embedder, ExactCache,
    SemanticCache, SemanticLookup, Switch,
};
use std::sync::Arc;
use std::time::Duration;

/// Bag of words over a fixed vocabulary, L2-normalised: prompts with the same words are
/// identical, prompts sharing some words are in between, others are orthogonal.
struct WordsEmbedder;

const VOCABULARY: &[&str] = &[
    "what",
    "is",
    "ai",
    "artificial",
    "intelligence",
    "bake",
    "bread",
    "capital",
    "france",
];

impl Embedder for WordsEmbedder {
    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = vec![0.0f32; VOCABULARY.len() + 1];
        for word in text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let slot = VOCABULARY
                .iter()
                .position(|w| *w == word)
                .unwrap_or(VOCABULARY.len());
            v[slot] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
        Ok(v.into_iter().map(|x| x / norm).collect())
    }

    fn dimension(&self) -> usize {
        VOCABULARY.len() + 1
    }
}

fn request<'a>(key: &'a KeyId, prompt: &'a str) -> CacheRequest<'a> {
    CacheRequest {
        key,
        model: "smollm2",
        prompt,
        session_id: None,
        params: "{}",
    }
}

#[test]
fn exact_cache_normalises_case_and_whitespace() {
    let cache = ExactCache::new(16, None);
    let alice = KeyId::new("alice");
    cache.insert(&request(&alice, "What is  AI?"), "answer".to_owned());
    assert_eq!(
        cache.get(&request(&alice, "  what is ai?\n")).as_deref(),
        Some("answer")
    );
    assert_eq!(
        cache.get(&request(&alice, "What is AI")),
        None,
        "punctuation is part of the prompt"
    );
    assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
}

#[test]
fn exact_cache_never_crosses_keys_models_or_parameters() {
    let cache = ExactCache::new(16, None);
    let (alice, bob) = (KeyId::new("alice"), KeyId::new("bob"));
    cache.insert(&request(&alice, "What is AI?"), "alice's".to_owned());
    assert_eq!(cache.get(&request(&bob, "What is AI?")), None);
    assert_eq!(
        cache.get(&CacheRequest {
            model: "other",
            ..request(&alice, "What is AI?")
        }),
        None
    );
    assert_eq!(
        cache.get(&CacheRequest {
            params: r#"{"max_tokens":5}"#,
            ..request(&alice, "What is AI?")
        }),
        None
    );
    assert_eq!(
        cache.get(&request(&alice, "What is AI?")).as_deref(),
        Some("alice's")
    );
}

#[test]
fn exact_cache_skips_requests_with_a_session() {
    let cache = ExactCache::new(16, None);
    let alice = KeyId::new("alice");
    let in_session = CacheRequest {
        session_id: Some("s1"),
        ..request(&alice, "What is AI?")
    };
    cache.insert(&in_session, "x".to_owned());
    assert!(cache.is_empty());
    cache.insert(&request(&alice, "What is AI?"), "x".to_owned());
    assert_eq!(cache.get(&in_session), None);
    assert_eq!(
        cache.stats(),
        CacheStats::default(),
        "bypasses are neither hits nor misses"
    );
}

#[test]
fn exact_cache_is_bounded_lru_and_expires() {
    let cache = ExactCache::new(2, None);
    let alice = KeyId::new("alice");
    cache.insert(&request(&alice, "a"), 1);
    cache.insert(&request(&alice, "b"), 2);
    assert_eq!(cache.get(&request(&alice, "a")), Some(1)); // "b" is now least recently used
    cache.insert(&request(&alice, "c"), 3);
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(&request(&alice, "b")), None);

    let expiring = ExactCache::new(2, Some(Duration::ZERO));
    expiring.insert(&request(&alice, "a"), 1);
    assert_eq!(expiring.get(&request(&alice, "a")), None);
    assert!(
        expiring.is_empty(),
        "an expired entry is dropped when found"
    );
}

fn semantic(max_entries: usize, ttl: Option<Duration>) -> SemanticCache<String> {
    SemanticCache::new(Arc::new(WordsEmbedder), 0.8, max_entries, ttl)
}

async fn hit(cache: &SemanticCache<String>, request: &CacheRequest<'_>) -> Option<String> {
    match cache.lookup(request).await.unwrap() {
        SemanticLookup::Hit { value, similarity } => {
            assert!(similarity >= cache.threshold());
            Some(value)
        }
        SemanticLookup::Miss { .. } | SemanticLookup::Bypass => None,
    }
}

async fn fill(cache: &SemanticCache<String>, request: &CacheRequest<'_>, answer: &str) {
    let SemanticLookup::Miss { embedding } = cache.lookup(request).await.unwrap() else {
        panic!("expected a miss")
    };
    cache.insert(request, embedding, answer.to_owned());
}

#[tokio::test]
async fn semantic_cache_hits_above_threshold_within_scope_only() {
    let cache = semantic(16, None);
    let (alice, bob) = (KeyId::new("alice"), KeyId::new("bob"));
    fill(&cache, &request(&alice, "what is ai"), "AI is…").await;
    // Same words in another order and case: similarity 1.
    assert_eq!(
        hit(&cache, &request(&alice, "AI: what is?"))
            .await
            .as_deref(),
        Some("AI is…")
    );
    // Shares two of three words: cosine 0.67 < 0.8.
    assert_eq!(hit(&cache, &request(&alice, "what is bread")).await, None);
    assert_eq!(
        hit(&cache, &request(&bob, "what is ai")).await,
        None,
        "never across keys"
    );
    assert_eq!(
        hit(
            &cache,
            &CacheRequest {
                model: "m2",
                ..request(&alice, "what is ai")
            }
        )
        .await,
        None
    );
    let in_session = CacheRequest {
        session_id: Some("s"),
        ..request(&alice, "what is ai")
    };
    assert!(matches!(
        cache.lookup(&in_session).await.unwrap(),
        SemanticLookup::Bypass
    ));
    assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 4 });
}

#[tokio::test]
async fn semantic_cache_returns_the_most_similar_answer() {
    let cache = semantic(16, None);
    let alice = KeyId::new("alice");
    fill(
        &cache,
        &request(&alice, "what is ai ai ai bread"),
        "mostly ai",
    )
    .await;
    // Its lookup would hit the first entry (0.83), so store it directly.
    let exact = request(&alice, "what is ai");
    cache.insert(
        &exact,
        cache.embed("what is ai").await.unwrap(),
        "exactly".to_owned(),
    );
    assert_eq!(
        hit(&cache, &request(&alice, "is ai what")).await.as_deref(),
        Some("exactly")
    );
}

#[tokio::test]
async fn semantic_cache_is_bounded_evicting_least_recently_used_across_scopes() {
    let cache = semantic(2, None);
    let (alice, bob) = (KeyId::new("alice"), KeyId::new("bob"));
    fill(&cache, &request(&alice, "what is ai"), "1").await;
    fill(&cache, &request(&bob, "bake bread"), "2").await;
    assert!(hit(&cache, &request(&alice, "what is ai")).await.is_some()); // bob's is now the LRU
    fill(&cache, &request(&alice, "capital france"), "3").await;
    assert_eq!(cache.len(), 2);
    assert_eq!(hit(&cache, &request(&bob, "bake bread")).await, None);
    assert!(hit(&cache, &request(&alice, "what is ai")).await.is_some());
    assert!(
        hit(&cache, &request(&alice, "capital france"))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn semantic_cache_entries_expire() {
    let cache = semantic(4, Some(Duration::ZERO));
    let alice = KeyId::new("alice");
    fill(&cache, &request(&alice, "what is ai"), "old").await;
    assert_eq!(hit(&cache, &request(&alice, "what is ai")).await, None);
    assert!(cache.is_empty(), "expired entries are dropped on lookup");
}

#[tokio::test]
async fn caches_from_args_store_in_both_and_validate() {
    let args = CacheArgs {
        semantic: Switch::On,
        ..CacheArgs::default()
    };
    let caches: Caches<String> =
        Caches::with_embedder(&args, Some(Arc::new(WordsEmbedder))).unwrap();
    let alice = KeyId::new("alice");
    let req = request(&alice, "what is ai");
    let SemanticLookup::Miss { embedding } = caches
        .semantic
        .as_ref()
        .unwrap()
        .lookup(&req)
        .await
        .unwrap()
    else {
        panic!("empty cache must miss")
    };
    caches.store(&req, Some(embedding), "A".to_owned());
    assert_eq!(
        caches.exact.as_ref().unwrap().get(&req).as_deref(),
        Some("A")
    );
    assert_eq!(
        hit(
            caches.semantic.as_ref().unwrap(),
            &request(&alice, "ai is what")
        )
        .await
        .as_deref(),
        Some("A")
    );

    let off = CacheArgs {
        exact: Switch::Off,
        ..CacheArgs::default()
    };
    let caches: Caches<String> = Caches::from_args(&off).unwrap();
    assert!(caches.exact.is_none() && caches.semantic.is_none());

    let bad = |args: CacheArgs| Caches::<String>::from_args(&args).err().unwrap();
    assert!(matches!(
        bad(CacheArgs {
            semantic: Switch::On,
            ..CacheArgs::default()
        }),
        CacheError::NoEmbeddingModel
    ));
    for threshold in [0.0, 1.5, f32::NAN] {
        let err = bad(CacheArgs {
            similarity_threshold: threshold,
            ..CacheArgs::default()
        });
        assert!(
            err.to_string().starts_with("cache-similarity-threshold"),
            "{err}"
        );
    }
    assert!(
        bad(CacheArgs {
            max_entries: 0,
            ..CacheArgs::default()
        })
        .to_string()
        .starts_with("cache-max-entries")
    );
    let missing = CacheArgs {
        semantic: Switch::On,
        embedding_model_dir: Some("/nonexistent/minilm".into()),
        ..CacheArgs::default()
    };
    let err = bad(missing).to_string();
    assert!(
        err.starts_with("embedding-model-dir /nonexistent/minilm"),
        "{err}"
    );
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    cache: CacheArgs,
}

#[test]
fn cli_flags_are_consistent_and_parse() {
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "x",
        "--cache-exact",
        "off",
        "--cache-semantic",
        "on",
        "--cache-similarity-threshold",
        "0.9",
        "--cache-max-entries",
        "10",
        "--cache-ttl-seconds",
        "0",
        "--embedding-model-dir",
        "/m",
    ])
    .unwrap();
    assert_eq!(
        (cli.cache.exact, cli.cache.semantic),
        (Switch::Off, Switch::On)
    );
    assert_eq!(cli.cache.similarity_threshold, 0.9);
    assert_eq!((cli.cache.max_entries, cli.cache.ttl_seconds), (10, 0));
}
