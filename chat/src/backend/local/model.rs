//! Loading a GGUF chat model with llama.cpp: the architecture check, the weights, and what
//! the backend needs from the metadata (chat template, context length).

use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::gguf::GgufContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

use super::llama_log;
use crate::backend::{BackendError, Result};

/// The architectures the local backend is tested with: `llama` with SmolLM2's real weights
/// (tests/local_backend.rs), each of them on a tiny random model with its family's
/// tokenizer and chat template (tests/local_architectures.rs). llama.cpp loads more; an
/// unknown one fails to load and the error names it.
pub(super) const TESTED_ARCHITECTURES: &str = concat!(
    "llama (SmolLM2, Llama 3, Mistral), qwen2, qwen3, phi3 (Phi-3, Phi-4-mini), ",
    "gemma, gemma2, gemma3"
);

/// llama.cpp's process-wide state: initialised once, its logs sent to `tracing`.
pub(super) fn llama_backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BackendError::Load(format!("cannot initialise llama.cpp: {e}")))
}

/// A loaded model and what generation needs to know about it.
pub(super) struct Loaded {
    pub model: LlamaModel,
    pub chat_template: Option<String>,
    /// The text of the end-of-sequence token, for templates that write `eos_token`.
    pub eos_token: String,
    /// The context length the model was trained with.
    pub context_len: usize,
    /// The window of a sliding-window model's local attention layers (Gemma 2 and 3).
    pub sliding_window: Option<usize>,
}

pub(super) fn load(path: &Path) -> Result<Loaded> {
    let fail =
        |message: String| BackendError::Load(format!("--chat-gguf {}: {message}", path.display()));
    std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let architecture = architecture(path).ok_or_else(|| fail("not a GGUF file".into()))?;
    let backend = llama_backend()?;
    let (model, errors) = llama_log::recording_errors(|| {
        LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
    });
    let model = model.map_err(|e| {
        let reason = if errors.is_empty() {
            e.to_string()
        } else {
            errors.join("; ")
        };
        fail(format!(
            "llama.cpp cannot load a model of architecture `{architecture}` from it ({reason}): \
             an architecture this build does not support, or a damaged file \
             (tested: {TESTED_ARCHITECTURES})"
        ))
    })?;
    let vocab = model.vocab();
    let eos_token =
        String::from_utf8_lossy(&vocab.token_to_piece(vocab.eos(), true, None)).into_owned();
    Ok(Loaded {
        chat_template: model.meta_val_str("tokenizer.chat_template").ok(),
        eos_token,
        context_len: model.n_ctx_train() as usize,
        sliding_window: model
            .meta_val_str(&format!("{architecture}.attention.sliding_window"))
            .ok()
            .and_then(|window| window.trim().parse().ok()),
        model,
    })
}

/// `general.architecture` of a GGUF file; `None` when it is not one.
fn architecture(path: &Path) -> Option<String> {
    let gguf = GgufContext::from_file(path)?;
    let key = gguf.find_key("general.architecture");
    Some(if key < 0 {
        "(none)".to_string()
    } else {
        gguf.val_str(key).unwrap_or("(not a string)").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF (version 3) with no tensors and the given string metadata.
    fn gguf(metadata: &[(&str, &str)]) -> tempfile::NamedTempFile {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.extend((metadata.len() as u64).to_le_bytes());
        let string = |bytes: &mut Vec<u8>, s: &str| {
            bytes.extend((s.len() as u64).to_le_bytes());
            bytes.extend(s.as_bytes());
        };
        for (key, value) in metadata {
            string(&mut bytes, key);
            bytes.extend(8u32.to_le_bytes()); // GGUF_TYPE_STRING
            string(&mut bytes, value);
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    fn load_error(path: &Path) -> String {
        match load(path) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} must not load", path.display()),
        }
    }

    #[test]
    fn an_unknown_architecture_fails_naming_it() {
        let file = gguf(&[("general.architecture", "quantum-llm")]);
        let message = load_error(file.path());
        assert!(message.contains("`quantum-llm`"), "{message}");
        assert!(message.contains("--chat-gguf"), "{message}");
    }

    #[test]
    fn a_file_that_is_not_gguf_says_so() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"not a model").unwrap();
        assert!(load_error(file.path()).contains("not a GGUF file"));
    }
}
