//! The semantic cache with the real all-MiniLM-L6-v2 (needs `MOORING_TEST_MINILM_DIR`;
//! `make test` sets it): the embeddings, the similarity distributions the default threshold
//! was chosen from, and the "What is AI?" hit. What embedding and lookup cost is measured by
//! `cargo run -p mooring-chat --release --example semantic_cache_cost`.

use mooring_chat::auth::KeyId;
use mooring_chat::cache::{
    CacheRequest, DEFAULT_SIMILARITY_THRESHOLD, Embedder, MiniLmEmbedder, SemanticCache,
    SemanticLookup,
};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

static EMBEDDER: LazyLock<Arc<MiniLmEmbedder>> = LazyLock::new(|| {
    let dir = std::env::var_os("MOORING_TEST_MINILM_DIR")
        .map(PathBuf::from)
        .expect("MOORING_TEST_MINILM_DIR is not set: it names the all-MiniLM-L6-v2 directory; run `make test`");
    Arc::new(
        MiniLmEmbedder::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display())),
    )
});

fn cosine(a: &str, b: &str) -> f32 {
    let (a, b) = (EMBEDDER.embed(a).unwrap(), EMBEDDER.embed(b).unwrap());
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}

#[test]
fn embeddings_are_deterministic_unit_vectors_of_384() {
    let a = EMBEDDER.embed("What is AI?").unwrap();
    assert_eq!(a.len(), 384);
    assert_eq!(EMBEDDER.dimension(), 384);
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    assert_eq!(a, EMBEDDER.embed("What is AI?").unwrap());
    // Empty and very long inputs are handled (long ones truncated to the model's window).
    assert_eq!(EMBEDDER.embed("").unwrap().len(), 384);
    assert_eq!(EMBEDDER.embed(&"word ".repeat(2000)).unwrap().len(), 384);
    // Meaning, not spelling: a paraphrase is closer than a lookalike with another meaning.
    assert!(
        cosine(
            "How do I reverse a list in Python?",
            "How can I reverse a Python list?"
        ) > cosine(
            "How do I reverse a list in Python?",
            "How do I bake sourdough bread?"
        )
    );
}

struct Distribution {
    label: String,
    values: Vec<f32>,
}

impl Distribution {
    fn min(&self) -> f32 {
        self.values.iter().copied().fold(f32::INFINITY, f32::min)
    }
    fn max(&self) -> f32 {
        self.values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }
    fn mean(&self) -> f32 {
        self.values.iter().sum::<f32>() / self.values.len() as f32
    }
}

/// Embeds every pair in cache_similarity_pairs.tsv, prints each label's distribution (run
/// with `--nocapture` to see it) and checks the default threshold separates paraphrases
/// from unrelated prompts.
#[test]
fn similarity_distributions() {
    let text = include_str!("cache_similarity_pairs.tsv");
    let mut distributions: Vec<Distribution> = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let [label, a, b] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}")
        };
        let similarity = cosine(a, b);
        println!("{label:<10} {similarity:.4}  {a} | {b}");
        match distributions.iter_mut().find(|d| d.label == label) {
            Some(d) => d.values.push(similarity),
            None => distributions.push(Distribution {
                label: label.to_owned(),
                values: vec![similarity],
            }),
        }
    }
    for d in &distributions {
        println!(
            "{:<10} n={:<3} min={:.3} mean={:.3} max={:.3}",
            d.label,
            d.values.len(),
            d.min(),
            d.mean(),
            d.max()
        );
    }
    let get = |label: &str| {
        distributions
            .iter()
            .find(|d| d.label == label)
            .expect(label)
    };
    let (paraphrase, unrelated) = (get("paraphrase"), get("unrelated"));
    assert!(paraphrase.values.len() >= 30 && unrelated.values.len() >= 20);
    assert!(
        unrelated.max() < DEFAULT_SIMILARITY_THRESHOLD,
        "an unrelated pair would hit"
    );
    let hits = paraphrase
        .values
        .iter()
        .filter(|&&s| s >= DEFAULT_SIMILARITY_THRESHOLD)
        .count();
    println!(
        "threshold {DEFAULT_SIMILARITY_THRESHOLD}: {hits}/{} paraphrases hit",
        paraphrase.values.len()
    );
    assert_eq!(
        hits,
        paraphrase.values.len(),
        "the default threshold was chosen to serve every paraphrase"
    );
    let related = get("related");
    let related_hits = related
        .values
        .iter()
        .filter(|&&s| s >= DEFAULT_SIMILARITY_THRESHOLD)
        .count();
    println!(
        "threshold {DEFAULT_SIMILARITY_THRESHOLD}: {related_hits}/{} related-but-different pairs hit",
        related.values.len()
    );
    // "reverse a list"/"a string" (0.8305) and the Celsius/Fahrenheit inversion (0.995).
    assert!(
        related_hits <= 2,
        "{related_hits} related-but-different pairs would share an answer"
    );
}

#[tokio::test]
async fn what_is_ai_hits_and_an_unrelated_question_misses() {
    let embedder: Arc<dyn Embedder> = EMBEDDER.clone();
    let cache = SemanticCache::new(embedder, DEFAULT_SIMILARITY_THRESHOLD, 64, None);
    let key = KeyId::new("alice");
    let request = |prompt| CacheRequest {
        key: &key,
        model: "smollm2",
        prompt,
        session_id: None,
        params: "{}",
    };

    let SemanticLookup::Miss { embedding } = cache.lookup(&request("What is AI?")).await.unwrap()
    else {
        panic!("an empty cache must miss")
    };
    cache.insert(
        &request("What is AI?"),
        embedding,
        "AI is the field of making machines think.".to_owned(),
    );

    match cache
        .lookup(&request("What is artificial intelligence?"))
        .await
        .unwrap()
    {
        SemanticLookup::Hit { value, similarity } => {
            println!("What is AI? ~ What is artificial intelligence? = {similarity:.3}");
            assert_eq!(value, "AI is the field of making machines think.");
        }
        other => panic!("paraphrase missed: {other:?}"),
    }
    assert!(matches!(
        cache
            .lookup(&request("How do I bake sourdough bread?"))
            .await
            .unwrap(),
        SemanticLookup::Miss { .. }
    ));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
}

/// The embedder agrees with an independent numpy implementation of the same model
/// (cache_minilm_reference.py, golden output in cache_minilm_golden.json): tokenisation,
/// the BERT forward pass, mean pooling and normalisation all match.
#[test]
fn embeddings_match_an_independent_reference() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("cache_minilm_golden.json")).unwrap();
    let cases = golden.as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let actual = EMBEDDER.embed(text).unwrap();
        assert_eq!(actual.len(), expected.len());
        let worst = actual
            .iter()
            .zip(&expected)
            .map(|(a, e)| (a - e).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{text:?}: largest difference {worst}");
    }
}
