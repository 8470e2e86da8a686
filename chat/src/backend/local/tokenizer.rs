//! Builds a `tokenizers` tokenizer from a GGUF file's metadata, so the model file is all
//! that is needed: `tokenizer.ggml.tokens`/`merges` form a byte-level BPE (GPT-2 style,
//! with digits split one by one as SmolLM2's original tokenizer does), and control tokens
//! (`token_type` 3) become special tokens so `<|im_start|>` in a prompt is one token.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF's token type for control tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata `{key}` is missing")]
    Missing { key: &'static str },
    #[error("GGUF metadata `{key}` has an unexpected type: {message}")]
    BadValue { key: &'static str, message: String },
    #[error("GGUF tokenizer model `{0}` is not supported (only `gpt2` byte-level BPE)")]
    UnsupportedModel(String),
    #[error("cannot build the tokenizer: {0}")]
    Build(String),
}

/// The tokenizer and the ids the generator needs.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// Tokens that end a turn: the GGUF's `eos_token_id`, plus `<|im_end|>` and
    /// `<|endoftext|>` when the vocabulary has them (ChatML models end turns with the former).
    pub end_of_turn: Vec<u32>,
    /// The Jinja chat template, when the file carries one.
    pub chat_template: Option<String>,
}

fn get<'a>(content: &'a Content, key: &'static str) -> Result<&'a Value, TokenizerError> {
    content
        .metadata
        .get(key)
        .ok_or(TokenizerError::Missing { key })
}

fn strings(content: &Content, key: &'static str) -> Result<Vec<String>, TokenizerError> {
    let bad = |e: candle_core::Error| TokenizerError::BadValue {
        key,
        message: e.to_string(),
    };
    get(content, key)?
        .to_vec()
        .map_err(bad)?
        .iter()
        .map(|v| v.to_string().cloned().map_err(bad))
        .collect()
}

/// Reads the tokenizer out of the GGUF metadata.
pub fn from_gguf(content: &Content) -> Result<GgufTokenizer, TokenizerError> {
    let model = get(content, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| TokenizerError::BadValue {
            key: "tokenizer.ggml.model",
            message: e.to_string(),
        })?;
    if model != "gpt2" {
        return Err(TokenizerError::UnsupportedModel(model.clone()));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| TokenizerError::BadValue {
                    key: "tokenizer.ggml.merges",
                    message: format!("merge `{m}` is not two space-separated parts"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let token_types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .and_then(|vs| vs.iter().map(|v| v.to_i32()).collect())
            .map_err(|e| TokenizerError::BadValue {
                key: "tokenizer.ggml.token_type",
                message: e.to_string(),
            })?,
        None => Vec::new(),
    };

    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), id as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| TokenizerError::Build(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = token_types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL)
        .map(|(id, _)| AddedToken::from(tokens[id].clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| TokenizerError::Build(e.to_string()))?;

    let mut end_of_turn = Vec::new();
    if let Some(eos) = content.metadata.get("tokenizer.ggml.eos_token_id") {
        end_of_turn.push(eos.to_u32().map_err(|e| TokenizerError::BadValue {
            key: "tokenizer.ggml.eos_token_id",
            message: e.to_string(),
        })?);
    }
    for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
        if let Some(id) = tokenizer.token_to_id(name)
            && !end_of_turn.contains(&id)
        {
            end_of_turn.push(id);
        }
    }
    let chat_template = content
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok().cloned());
    Ok(GgufTokenizer {
        tokenizer,
        end_of_turn,
        chat_template,
    })
}
