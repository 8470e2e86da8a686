//! Tiny randomly-initialised chat models, one per GGUF architecture the local backend
//! claims: the tensors and hyperparameters llama.cpp requires of each (as its
//! `src/models/<arch>.cpp` creates them), a tokenizer of the kind the family's files carry
//! with its chat control tokens ([`super::tiny_vocab`]), and a chat template in the family's
//! format. Random weights answer gibberish; what they prove is that the file loads, the
//! template renders, the prompt tokenizes and generation runs through the architecture's graph.

use super::tiny_gguf::{Gguf, XorShift};
use super::tiny_vocab::{self, Tokenizer};

/// Small enough to load and generate in milliseconds; 4 query heads over 2 KV heads keep
/// grouped-query attention in play.
pub const LAYERS: u64 = 2;
pub const EMBEDDING: u64 = 64;
pub const HEADS: u64 = 4;
pub const KV_HEADS: u64 = 2;
pub const HEAD_DIM: u64 = EMBEDDING / HEADS;
pub const FEED_FORWARD: u64 = 128;
pub const CONTEXT: u32 = 512;

/// One model family: the architecture and what its GGUF files carry.
pub struct Family {
    /// Names the case in test output.
    pub name: &'static str,
    pub architecture: &'static str,
    /// `general.name`: llama.cpp adjusts Phi-3's tokenizer by it.
    pub model_name: &'static str,
    pub tokenizer: Tokenizer,
    pub template: &'static str,
    /// The control tokens; `bos` and `eos` are among them.
    pub specials: &'static [&'static str],
    /// Control tokens that swallow the whitespace after them when text is tokenized.
    pub strip_after: &'static [&'static str],
    pub bos: &'static str,
    pub eos: &'static str,
    pub add_bos: bool,
    /// What `template` renders for one user message "hi there" (BOS excluded: llama.cpp adds it).
    pub first_prompt: &'static str,
}

pub const LLAMA3: Family = Family {
    name: "llama (Llama 3)",
    architecture: "llama",
    model_name: "Llama 3 tiny",
    tokenizer: Tokenizer::Bpe { pre: "llama-bpe" },
    template: "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    specials: &[
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ],
    strip_after: &[],
    bos: "<|begin_of_text|>",
    eos: "<|eot_id|>",
    add_bos: true,
    first_prompt: "<|start_header_id|>user<|end_header_id|>\n\nhi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
};

/// Mistral 7B (and Llama 2): the `llama` architecture, a SentencePiece tokenizer.
pub const MISTRAL_7B: Family = Family {
    name: "llama (Mistral 7B)",
    architecture: "llama",
    model_name: "Mistral 7B tiny",
    tokenizer: Tokenizer::Spm { space_prefix: true },
    template: "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
    specials: &["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
    strip_after: &[],
    bos: "<s>",
    eos: "</s>",
    add_bos: true,
    first_prompt: "[INST] hi there [/INST]",
};

/// Mistral Nemo: the same format, a byte-level BPE tokenizer (`tekken`).
pub const MISTRAL_NEMO: Family = Family {
    name: "llama (Mistral Nemo)",
    model_name: "Mistral Nemo tiny",
    tokenizer: Tokenizer::Bpe { pre: "tekken" },
    ..MISTRAL_7B
};

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

pub const QWEN2: Family = Family {
    name: "qwen2",
    architecture: "qwen2",
    model_name: "Qwen2 tiny",
    tokenizer: Tokenizer::Bpe { pre: "qwen2" },
    template: CHATML,
    specials: &["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    strip_after: &[],
    bos: "<|endoftext|>",
    eos: "<|im_end|>",
    add_bos: false,
    first_prompt: "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
};

/// Qwen3's format is ChatML too, but its template (like this one, written for the test)
/// finds the last user query backwards through a namespace and drops the reasoning of
/// earlier answers with Python string methods.
pub const QWEN3: Family = Family {
    name: "qwen3",
    architecture: "qwen3",
    model_name: "Qwen3 tiny",
    template: "{%- set ns = namespace(last_query=-1) %}{%- for m in messages[::-1] %}{%- if ns.last_query < 0 and m.role == 'user' and not m.content.startswith('<tool_response>') %}{%- set ns.last_query = (messages|length - 1) - loop.index0 %}{%- endif %}{%- endfor %}{%- for m in messages %}{%- set content = m.content %}{%- if m.role == 'assistant' and '</think>' in content %}{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}{{- '<|im_start|>' + m.role + '\\n' + content + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    ..QWEN2
};

const PHI3_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '<|end|>\n' }}{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}";

/// Phi-3-mini: a SentencePiece tokenizer. llama.cpp recognises Phi-3 by `general.name` and
/// then strips the whitespace after its control tokens, as Phi-3's tokenizer does (for
/// which it requires `<unk>`, `<s>`, `</s>`).
pub const PHI3: Family = Family {
    name: "phi3 (Phi-3)",
    architecture: "phi3",
    model_name: "Phi3 tiny",
    tokenizer: Tokenizer::Spm { space_prefix: true },
    template: PHI3_TEMPLATE,
    specials: &[
        "<unk>",
        "<s>",
        "</s>",
        "<|endoftext|>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|end|>",
    ],
    strip_after: &["</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    bos: "<s>",
    eos: "<|end|>",
    add_bos: false,
    first_prompt: "<|user|>\nhi there<|end|>\n<|assistant|>\n",
};

/// Phi-4-mini: the `phi3` architecture and format, a byte-level BPE tokenizer (`gpt-4o`).
pub const PHI4_MINI: Family = Family {
    name: "phi3 (Phi-4-mini)",
    model_name: "Phi 4 Mini tiny",
    tokenizer: Tokenizer::Bpe { pre: "gpt-4o" },
    specials: &[
        "<|endoftext|>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|end|>",
    ],
    strip_after: &[],
    bos: "<|endoftext|>",
    ..PHI3
};

/// Gemma 1, 2 and 3 share the format and a SentencePiece tokenizer without the space prefix.
pub const GEMMA: Family = Family {
    name: "gemma",
    architecture: "gemma",
    model_name: "Gemma tiny",
    tokenizer: Tokenizer::Spm {
        space_prefix: false,
    },
    template: "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
    specials: &[
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
    ],
    strip_after: &[],
    bos: "<bos>",
    eos: "<eos>",
    add_bos: true,
    first_prompt: "<start_of_turn>user\nhi there<end_of_turn>\n<start_of_turn>model\n",
};

pub const GEMMA2: Family = Family {
    name: "gemma2",
    architecture: "gemma2",
    model_name: "Gemma 2 tiny",
    ..GEMMA
};

pub const GEMMA3: Family = Family {
    name: "gemma3",
    architecture: "gemma3",
    model_name: "Gemma 3 tiny",
    ..GEMMA
};

impl Family {
    /// The GGUF of a tiny model of this family, its weights drawn from `seed`.
    pub fn gguf(&self, seed: u64) -> Gguf {
        self.gguf_with(seed, 0.2)
    }

    /// Embeddings uniform in `[-embedding_scale, embedding_scale)`, the other weights in
    /// `[-0.2, 0.2)`. The output weights are the embeddings: as large as the others, they
    /// make the model answer its last token again and again; much smaller, the answer
    /// depends on the context.
    pub fn gguf_with(&self, seed: u64, embedding_scale: f32) -> Gguf {
        let mut gguf = Gguf::default();
        let arch = self.architecture;
        gguf.set("general.architecture", arch)
            .set("general.name", self.model_name)
            .set(format!("{arch}.context_length"), CONTEXT)
            .set(format!("{arch}.embedding_length"), EMBEDDING as u32)
            .set(format!("{arch}.block_count"), LAYERS as u32)
            .set(format!("{arch}.feed_forward_length"), FEED_FORWARD as u32)
            .set(format!("{arch}.attention.head_count"), HEADS as u32)
            .set(format!("{arch}.attention.head_count_kv"), KV_HEADS as u32)
            .set(format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-6f32)
            .set(format!("{arch}.rope.freq_base"), 10_000f32);
        match arch {
            "gemma2" => {
                gguf.set(format!("{arch}.attention.sliding_window"), 128u32)
                    .set(format!("{arch}.attn_logit_softcapping"), 50f32)
                    .set(format!("{arch}.final_logit_softcapping"), 30f32);
            }
            "gemma3" => {
                // Every second layer global (Gemma 3 has 5 local layers per global one), so
                // both kinds of attention run in 2 layers.
                gguf.set(format!("{arch}.attention.sliding_window"), 128u32)
                    .set(format!("{arch}.attention.sliding_window_pattern"), 2u32);
            }
            _ => {}
        }
        tiny_vocab::add_tokenizer(self, &mut gguf);
        gguf.set("tokenizer.chat_template", self.template);

        let mut rng = XorShift::new(seed);
        for (name, shape) in tensor_shapes(arch, tiny_vocab::vocab_len(self)) {
            let n = shape.iter().product();
            // Norm weights of 1 keep activations in range; llama.cpp's Gemma files store
            // them with the +1 of Gemma's RMSNorm already added.
            let values = if name.contains("norm") {
                vec![1.0; n as usize]
            } else if name == "token_embd.weight" {
                rng.values(n, embedding_scale)
            } else {
                rng.values(n, 0.2)
            };
            gguf.add_tensor(name, &shape, values);
        }
        gguf
    }

    /// How many tokens llama.cpp makes of `text` (control tokens parsed, BOS added when the
    /// family adds it), counted independently of it.
    pub fn count_tokens(&self, text: &str) -> usize {
        tiny_vocab::count_tokens(self, text)
    }
}

/// The tensors llama.cpp requires of `architecture`, with their shapes (`ne[0]` first).
/// Output weights are tied to the embeddings, as in the small models of every family.
fn tensor_shapes(architecture: &str, vocab: u64) -> Vec<(String, Vec<u64>)> {
    let (e, f, q, kv) = (
        EMBEDDING,
        FEED_FORWARD,
        HEADS * HEAD_DIM,
        KV_HEADS * HEAD_DIM,
    );
    let mut shapes = vec![
        ("token_embd.weight".to_string(), vec![e, vocab]),
        ("output_norm.weight".to_string(), vec![e]),
    ];
    let gemma_post_norms = matches!(architecture, "gemma2" | "gemma3");
    let qk_norms = matches!(architecture, "qwen3" | "gemma3");
    for layer in 0..LAYERS {
        let mut add = |name: &str, shape: &[u64]| {
            shapes.push((format!("blk.{layer}.{name}.weight"), shape.to_vec()));
        };
        add("attn_norm", &[e]);
        if architecture == "phi3" {
            // Phi-3 stores Q, K and V as one matrix and the gate and up projections as one.
            add("attn_qkv", &[e, q + 2 * kv]);
            add("ffn_up", &[e, 2 * f]);
        } else {
            add("attn_q", &[e, q]);
            add("attn_k", &[e, kv]);
            add("attn_v", &[e, kv]);
            add("ffn_gate", &[e, f]);
            add("ffn_up", &[e, f]);
        }
        add("attn_output", &[q, e]);
        add("ffn_norm", &[e]);
        add("ffn_down", &[f, e]);
        if qk_norms {
            add("attn_q_norm", &[HEAD_DIM]);
            add("attn_k_norm", &[HEAD_DIM]);
        }
        if gemma_post_norms {
            add("post_attention_norm", &[e]);
            add("post_ffw_norm", &[e]);
        }
        if architecture == "qwen2" {
            for (name, len) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
                shapes.push((format!("blk.{layer}.{name}.bias"), vec![len]));
            }
        }
    }
    shapes
}
