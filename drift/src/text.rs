//! Drift of a text feature, the way Evidently checks text: not the raw strings (nearly all
//! distinct, so any window would "drift"), but simple descriptors of each message compared
//! as numeric features — its length in characters, its share of characters that are neither
//! letters nor spaces, and its share of words missing from the reference's vocabulary.

use std::collections::{BTreeMap, HashSet};

/// The descriptors, as suffixes of the feature name (`text.length`, …).
pub const DESCRIPTORS: [&str; 3] = ["length", "non_letter_share", "oov_share"];

/// A categorical column holds free text when most of its values are distinct and they are
/// longer than category labels tend to be.
pub fn is_text(counts: &BTreeMap<String, u64>) -> bool {
    let total: u64 = counts.values().sum();
    if total < 2 {
        return false;
    }
    let chars: u64 = counts
        .iter()
        .map(|(t, n)| t.chars().count() as u64 * n)
        .sum();
    counts.len() as f64 / total as f64 >= 0.5 && chars as f64 / total as f64 >= 12.0
}

/// Lower-case words: runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Every word of the reference's texts.
pub fn vocabulary(reference: &BTreeMap<String, u64>) -> HashSet<String> {
    reference.keys().flat_map(|t| words(t)).collect()
}

/// The descriptors of one message, in the order of [`DESCRIPTORS`].
pub fn describe(text: &str, vocabulary: &HashSet<String>) -> [f64; 3] {
    let chars = text.chars().count();
    let non_letters = text
        .chars()
        .filter(|c| !c.is_alphabetic() && !c.is_whitespace())
        .count();
    let (mut total, mut unknown) = (0usize, 0usize);
    for w in words(text) {
        total += 1;
        if !vocabulary.contains(&w) {
            unknown += 1;
        }
    }
    let share = |part: usize, whole: usize| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    [
        chars as f64,
        share(non_letters, chars),
        share(unknown, total),
    ]
}

/// The descriptor columns of `counts` (each text repeated as often as it occurs), in the
/// order of [`DESCRIPTORS`].
pub fn descriptor_columns(
    counts: &BTreeMap<String, u64>,
    vocabulary: &HashSet<String>,
) -> [Vec<f64>; 3] {
    let mut out: [Vec<f64>; 3] = Default::default();
    for (text, &n) in counts {
        let d = describe(text, vocabulary);
        for (column, value) in out.iter_mut().zip(d) {
            column.extend(std::iter::repeat_n(value, n as usize));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_of_a_message() {
        let vocab: HashSet<String> = ["call", "me"].iter().map(|s| s.to_string()).collect();
        let [length, non_letters, oov] = describe("Call me 4 €5!", &vocab);
        assert_eq!(length, 13.0);
        assert!((non_letters - 4.0 / 13.0).abs() < 1e-12);
        assert!((oov - 2.0 / 4.0).abs() < 1e-12);
        assert_eq!(describe("", &vocab), [0.0, 0.0, 0.0]);
    }

    #[test]
    fn free_text_is_told_from_categories() {
        let labels = BTreeMap::from([("red".to_string(), 50), ("blue".to_string(), 50)]);
        assert!(!is_text(&labels));
        let messages: BTreeMap<String, u64> = (0..20)
            .map(|i| (format!("message number {i} about the weather"), 1))
            .collect();
        assert!(is_text(&messages));
    }
}
