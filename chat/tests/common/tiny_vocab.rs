//! The tokenizers of the tiny models, in the two kinds chat GGUFs carry: byte-level BPE
//! (`gpt2`: Llama 3, Qwen, Mistral Nemo, Phi-4-mini) and SentencePiece (`llama`: Llama 2,
//! Mistral 7B, Phi-3-mini, Gemma). A few tokens each, built so that how llama.cpp splits a
//! text can be counted here independently ([`count_tokens`]), to check the backend's prompt.

use super::tiny_gguf::{Gguf, Value};
use super::tiny_models::Family;

/// How a family's GGUF tokenizes.
#[derive(Debug, Clone, Copy)]
pub enum Tokenizer {
    /// Byte-level BPE; `pre` is `tokenizer.ggml.pre`, the pre-tokenizer of such files
    /// (llama.cpp refuses one it does not know).
    Bpe { pre: &'static str },
    /// SentencePiece with byte fallback; `space_prefix`: a space is put before text at the
    /// start and after each control token (Llama 2, Mistral 7B; Gemma turns it off).
    Spm { space_prefix: bool },
}

/// Merged pairs of lowercase letters, no letter in two of them and none starting with a
/// letter a contraction ends with (`'s 't 're 've 'm 'll 'd`, which every BPE pre-tokenizer
/// splits off): whichever pre-tokenizer regex llama.cpp applies, each occurrence of a pair
/// in a text is one token less than its bytes.
const PAIRS: [(&str, &str); 4] = [("h", "e"), ("i", "n"), ("o", "u"), ("a", "r")];

/// SentencePiece's space.
const SPM_SPACE: char = '\u{2581}';

/// `llama_token_type` values.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const BYTE: i32 = 6;

/// The tokens of `family` and their types.
fn tokens(family: &Family) -> Vec<(String, i32)> {
    let pairs = PAIRS.iter().map(|(a, b)| (format!("{a}{b}"), NORMAL));
    let specials = family.specials.iter().map(|s| {
        let kind = if *s == "<unk>" { UNKNOWN } else { CONTROL };
        (s.to_string(), kind)
    });
    match family.tokenizer {
        // The 256 byte tokens (id = byte), the pairs, the control tokens.
        Tokenizer::Bpe { .. } => (0..=255u8)
            .map(|b| (gpt2_byte(b), NORMAL))
            .chain(pairs)
            .chain(specials)
            .collect(),
        // As in SentencePiece files: control tokens, the 256 byte-fallback tokens, then the
        // pieces — the printable ASCII characters, the space, the pairs.
        Tokenizer::Spm { .. } => specials
            .chain((0..=255u8).map(|b| (format!("<0x{b:02X}>"), BYTE)))
            .chain(('!'..='~').map(|c| (c.to_string(), NORMAL)))
            .chain([(SPM_SPACE.to_string(), NORMAL)])
            .chain(pairs)
            .collect(),
    }
}

pub fn vocab_len(family: &Family) -> u64 {
    tokens(family).len() as u64
}

/// The `tokenizer.*` metadata of `family`.
pub fn add_tokenizer(family: &Family, gguf: &mut Gguf) {
    let (texts, types): (Vec<String>, Vec<i32>) = tokens(family).into_iter().unzip();
    let id = |text: &str| texts.iter().position(|t| t == text).unwrap() as u32;
    gguf.set("tokenizer.ggml.bos_token_id", id(family.bos))
        .set("tokenizer.ggml.eos_token_id", id(family.eos))
        .set("tokenizer.ggml.add_bos_token", family.add_bos);
    match family.tokenizer {
        Tokenizer::Bpe { pre } => {
            let merges = PAIRS.iter().map(|(a, b)| format!("{a} {b}")).collect();
            gguf.set("tokenizer.ggml.model", "gpt2")
                .set("tokenizer.ggml.pre", pre)
                .set("tokenizer.ggml.merges", Value::Strs(merges));
        }
        Tokenizer::Spm { space_prefix } => {
            // Pieces merge highest score first; the pairs never compete (no shared letter).
            let scores = types
                .iter()
                .map(|&t| if t == NORMAL { -1.0 } else { 0.0 })
                .collect();
            gguf.set("tokenizer.ggml.model", "llama")
                .set("tokenizer.ggml.unknown_token_id", id("<unk>"))
                .set("tokenizer.ggml.add_space_prefix", space_prefix)
                .set("tokenizer.ggml.scores", Value::F32s(scores));
        }
    }
    gguf.set("tokenizer.ggml.token_type", Value::I32s(types))
        .set("tokenizer.ggml.tokens", Value::Strs(texts));
}

/// How many tokens llama.cpp makes of `text` with control tokens parsed and BOS added when
/// the family adds it, as its tokenizer does it: control tokens first (swallowing the
/// whitespace after them where the family says so), then each stretch of text between them.
pub fn count_tokens(family: &Family, text: &str) -> usize {
    let mut count = usize::from(family.add_bos);
    let mut after_control = true;
    let mut rest = text;
    loop {
        // The earliest control token, the longest one at that position.
        let next = family
            .specials
            .iter()
            .filter_map(|s| rest.find(s).map(|at| (at, std::cmp::Reverse(s.len()))))
            .min();
        let (plain, control) = match next {
            Some((at, std::cmp::Reverse(len))) => (&rest[..at], Some(&rest[at..at + len])),
            None => (rest, None),
        };
        if !plain.is_empty() {
            count += text_tokens(family.tokenizer, plain, after_control);
        }
        let Some(control) = control else {
            return count;
        };
        count += 1;
        after_control = true;
        rest = &rest[plain.len() + control.len()..];
        if family.strip_after.contains(&control) {
            // C's isspace, as llama.cpp tests it.
            rest = rest.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
        }
    }
}

/// Tokens of a stretch of text without control tokens.
fn text_tokens(tokenizer: Tokenizer, text: &str, after_control: bool) -> usize {
    let pairs = |text: &str| -> usize {
        PAIRS
            .iter()
            .map(|(a, b)| text.matches(&format!("{a}{b}")).count())
            .sum()
    };
    match tokenizer {
        // One per byte, one less per pair.
        Tokenizer::Bpe { .. } => text.len() - pairs(text),
        // One per piece (printable ASCII, the space), one per UTF-8 byte of any other
        // character, one less per pair.
        Tokenizer::Spm { space_prefix } => {
            let prefix = if space_prefix && after_control {
                " "
            } else {
                ""
            };
            let text = format!("{prefix}{text}").replace(' ', &SPM_SPACE.to_string());
            let units: usize = text
                .chars()
                .map(|c| {
                    if c == SPM_SPACE || c.is_ascii_graphic() {
                        1
                    } else {
                        c.len_utf8()
                    }
                })
                .sum();
            units - pairs(&text)
        }
    }
}

/// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the others for the
/// code points from U+0100 on, in byte order.
fn gpt2_byte(byte: u8) -> String {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let c = if printable(byte) {
        char::from(byte)
    } else {
        let shifted = (0..byte).filter(|&b| !printable(b)).count() as u32;
        char::from_u32(256 + shifted).unwrap()
    };
    c.to_string()
}
