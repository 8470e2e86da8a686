//! The prompt guard's benchmark: recall and false-positive rate per family on the development
//! and the held-out half of `bench/guard/prompts.tsv`, the semantic threshold the development
//! half picks, and the guard's latency per prompt. Run it with `bench/guard/run.sh`.
//!
//! ```text
//! guard_eval [--prompts bench/guard/prompts.tsv] [--model DIR] [--write-exemplars FILE]
//! ```
//!
//! Without `--model` only the pattern and markup layers are measured. `--write-exemplars`
//! writes the development half's attacks, the semantic layer's corpus, and exits.

use mooring_chat::cache::{Embedder, MiniLmEmbedder};
use mooring_chat::guard::{
    DEFAULT_SEMANTIC_THRESHOLD, Guard, GuardMode, Layer, MatchForms, SemanticLayer, escape,
    strip_invisible, unescape,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

struct Prompt {
    attack: bool,
    family: String,
    text: String,
    held_out: bool,
}

/// The split, fixed before any tuning: the first byte of the SHA-256 of the text, odd =
/// held-out.
fn held_out(text: &str) -> bool {
    Sha256::digest(text.as_bytes())[0] % 2 == 1
}

fn load(path: &PathBuf) -> Vec<Prompt> {
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let (label, family, text) = (
                fields.next().unwrap_or(""),
                fields.next().unwrap_or(""),
                fields.next().unwrap_or(""),
            );
            assert!(
                label == "attack" || label == "benign",
                "bad label in line {line:?}"
            );
            let text = unescape(text);
            Prompt {
                attack: label == "attack",
                family: family.to_owned(),
                held_out: held_out(&text),
                text,
            }
        })
        .collect()
}

/// What the guard made of one prompt.
struct Verdict {
    layers: Vec<Layer>,
    /// The semantic layer's margin, the prompt itself left out of the corpus.
    score: Option<f32>,
}

impl Verdict {
    fn flagged(&self, threshold: f32) -> bool {
        !self.layers.is_empty() || self.score.is_some_and(|s| s >= threshold)
    }
}

#[derive(Default)]
struct Tally {
    n: usize,
    flagged: usize,
    by_layer: BTreeMap<&'static str, usize>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let mut prompts_path = PathBuf::from("bench/guard/prompts.tsv");
    let mut model: Option<PathBuf> = None;
    let mut write_exemplars: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prompts" => prompts_path = args.next().expect("--prompts FILE").into(),
            "--model" => model = Some(args.next().expect("--model DIR").into()),
            "--write-exemplars" => {
                write_exemplars = Some(args.next().expect("--write-exemplars FILE").into())
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let prompts = load(&prompts_path);

    if let Some(path) = write_exemplars {
        let mut out = String::from(
            "# The semantic layer's exemplars: the development half of bench/guard/prompts.tsv\n\
             # (never the held-out half), written by `bench/guard/run.sh --write-exemplars FILE`.\n\
             # label<TAB>prompt; escapes as in prompts.tsv.\n",
        );
        for p in prompts.iter().filter(|p| !p.held_out) {
            let label = if p.attack { "attack" } else { "benign" };
            out.push_str(&format!("{label}\t{}\n", escape(&p.text)));
        }
        std::fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("wrote {}", path.display());
        return;
    }

    let patterns = Guard::new(GuardMode::Flag, 0, &[]).expect("default patterns compile");
    let semantic = model.as_ref().map(|dir| {
        let embedder: Arc<dyn Embedder> =
            Arc::new(MiniLmEmbedder::load(dir).unwrap_or_else(|e| panic!("{e}")));
        let exemplars = SemanticLayer::carried_exemplars();
        for p in prompts.iter().filter(|p| p.held_out) {
            assert!(
                !exemplars.iter().any(|e| e.text == p.text),
                "a held-out prompt is in the exemplar corpus: {:?}",
                p.text
            );
        }
        SemanticLayer::new(embedder, exemplars, DEFAULT_SEMANTIC_THRESHOLD)
            .unwrap_or_else(|e| panic!("{e}"))
    });

    let verdicts: Vec<Verdict> = prompts
        .iter()
        .map(|p| {
            let analysis = patterns.analyze(&p.text);
            let mut layers: Vec<Layer> = analysis.detections.iter().map(|d| d.layer).collect();
            layers.dedup();
            let score = semantic.as_ref().map(|layer| {
                let forms = MatchForms::of(&strip_invisible(&p.text));
                // Leave-one-out: a development prompt is not compared with itself.
                layer
                    .nearest_excluding(&forms.embeddable, &forms.decoded_text, &|e| {
                        e.text == p.text
                    })
                    .unwrap_or_else(|e| panic!("{e}"))
                    .map_or(f32::NEG_INFINITY, |m| m.score)
            });
            Verdict { layers, score }
        })
        .collect();

    // The threshold the development half picks: the lowest (most recall) at which the whole
    // guard's false-positive rate on the development half's ordinary prompts stays ≤ 1 %.
    let tuned = semantic.as_ref().map(|_| {
        let dev: Vec<(&Prompt, &Verdict)> = prompts
            .iter()
            .zip(&verdicts)
            .filter(|(p, _)| !p.held_out)
            .collect();
        let benign = dev.iter().filter(|(p, _)| !p.attack).count() as f64;
        (1..=99)
            .map(|t| t as f32 / 100.0)
            .find(|&t| {
                let fp = dev
                    .iter()
                    .filter(|(p, v)| !p.attack && v.flagged(t))
                    .count() as f64;
                fp / benign <= 0.01
            })
            .unwrap_or(1.0)
    });
    let threshold = DEFAULT_SEMANTIC_THRESHOLD;
    if semantic.is_some() {
        println!("semantic layer alone on the development half (leave-one-out), by threshold:");
        let dev: Vec<(&Prompt, &Verdict)> = prompts
            .iter()
            .zip(&verdicts)
            .filter(|(p, _)| !p.held_out)
            .collect();
        for t in (0..=40).step_by(5).map(|t| t as f32 / 100.0) {
            let count = |attack: bool| {
                dev.iter()
                    .filter(|(p, v)| p.attack == attack && v.score.is_some_and(|s| s >= t))
                    .count()
            };
            println!(
                "  {t:.2}: recall {}/{}, false positives {}/{}",
                count(true),
                dev.iter().filter(|(p, _)| p.attack).count(),
                count(false),
                dev.iter().filter(|(p, _)| !p.attack).count()
            );
        }
    }

    println!(
        "prompt guard on {} ({} prompts); layers: patterns + markup{}",
        prompts_path.display(),
        prompts.len(),
        if semantic.is_some() {
            format!(" + semantic (threshold {threshold:.2})")
        } else {
            " (no --model: semantic layer not measured)".into()
        }
    );
    if let Some(tuned) = tuned {
        println!(
            "semantic threshold picked on the development half: {tuned:.2} (shipped default {threshold:.2})"
        );
    }
    for (half, is_held_out) in [("development", false), ("held-out", true)] {
        println!("\n== {half} half ==");
        println!(
            "{:<28} {:>4} {:>8} {:>9}   layers that fired",
            "family", "n", "flagged", "rate"
        );
        let mut tallies: BTreeMap<(bool, &str), Tally> = BTreeMap::new();
        for (p, v) in prompts.iter().zip(&verdicts) {
            if p.held_out != is_held_out {
                continue;
            }
            let tally = tallies.entry((!p.attack, p.family.as_str())).or_default();
            tally.n += 1;
            if v.flagged(threshold) {
                tally.flagged += 1;
                for layer in &v.layers {
                    *tally.by_layer.entry(layer.as_str()).or_default() += 1;
                }
                if v.layers.is_empty() {
                    *tally.by_layer.entry("semantic only").or_default() += 1;
                }
            } else if !is_held_out && p.attack {
                eprintln!("  dev miss [{}] {:?} score {:?}", p.family, p.text, v.score);
            }
            if v.flagged(threshold) && !is_held_out && !p.attack {
                eprintln!(
                    "  dev false positive [{}] {:?} layers {:?} score {:?}",
                    p.family, p.text, v.layers, v.score
                );
            }
        }
        let mut totals = [(0usize, 0usize); 2];
        for ((benign, family), tally) in &tallies {
            let kind = if *benign { "FPR" } else { "recall" };
            let layers: Vec<String> = tally
                .by_layer
                .iter()
                .map(|(layer, n)| format!("{layer} {n}"))
                .collect();
            println!(
                "{:<28} {:>4} {:>8} {:>6.1} % {kind:<6} {}",
                family,
                tally.n,
                tally.flagged,
                100.0 * tally.flagged as f64 / tally.n as f64,
                layers.join(", ")
            );
            let total = &mut totals[usize::from(*benign)];
            total.0 += tally.n;
            total.1 += tally.flagged;
        }
        let (attacks, caught) = totals[0];
        let (benign, false_positives) = totals[1];
        // Each kind of layer on its own, to show what the semantic layer adds.
        let half: Vec<(&Prompt, &Verdict)> = prompts
            .iter()
            .zip(&verdicts)
            .filter(|(p, _)| p.held_out == is_held_out)
            .collect();
        let alone = |attack: bool, hit: &dyn Fn(&Verdict) -> bool| {
            let of_kind: Vec<_> = half.iter().filter(|(p, _)| p.attack == attack).collect();
            let n = of_kind.iter().filter(|(_, v)| hit(v)).count();
            format!("{n}/{}", of_kind.len())
        };
        let by_patterns = |v: &Verdict| !v.layers.is_empty();
        let by_semantic = |v: &Verdict| v.score.is_some_and(|s| s >= threshold);
        println!(
            "pattern+markup+decoded alone: recall {}, false positives {}",
            alone(true, &by_patterns),
            alone(false, &by_patterns)
        );
        if semantic.is_some() {
            println!(
                "semantic layer alone:         recall {}, false positives {}",
                alone(true, &by_semantic),
                alone(false, &by_semantic)
            );
        }
        println!(
            "{:<28} {:>4} {:>8} {:>6.1} % recall\n{:<28} {:>4} {:>8} {:>6.1} % FPR",
            "ALL ATTACKS",
            attacks,
            caught,
            100.0 * caught as f64 / attacks as f64,
            "ALL ORDINARY",
            benign,
            false_positives,
            100.0 * false_positives as f64 / benign as f64,
        );
    }

    // Latency of the check as the server runs it (one prompt at a time, one thread): the
    // pattern layers alone, then all layers.
    println!();
    latency("patterns + markup + decoded", &patterns, &prompts);
    if let Some(layer) = semantic {
        let guard = Guard::new(GuardMode::Flag, 0, &[])
            .expect("default patterns compile")
            .with_semantic(layer);
        latency("all layers (semantic included)", &guard, &prompts);
    }
}

fn latency(what: &str, guard: &Guard, prompts: &[Prompt]) {
    for _ in 0..3 {
        std::hint::black_box(guard.analyze(&prompts[0].text));
    }
    let mut seconds: Vec<f64> = prompts
        .iter()
        .map(|p| {
            let started = Instant::now();
            std::hint::black_box(guard.analyze(&p.text));
            started.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    println!(
        "latency per prompt, {what} ({} prompts): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        seconds.len(),
        1000.0 * percentile(&seconds, 0.50),
        1000.0 * percentile(&seconds, 0.99),
        1000.0 * seconds.last().copied().unwrap_or_default(),
    );
}
