//! Renders a conversation into the prompt text the model was trained on, using the Jinja
//! chat template from the GGUF metadata (ChatML for SmolLM2). Models without a template
//! get plain ChatML.
//!
//! Templates may write `bos_token` (Llama 3, Mistral, Gemma): it renders empty, as llama.cpp
//! adds the BOS token itself when the GGUF asks for it (`tokenizer.ggml.add_bos_token`), and
//! twice would be wrong. `eos_token` renders as the model's, and `raise_exception` fails the
//! request with the template's message (Gemma refuses a system message that way). Python's
//! string and dict methods that templates call (`content.startswith(…)`, `.split(…)`,
//! `.strip()`, Qwen3's and DeepSeek-R1's) work as in Python ([`python_methods`]).

mod python_methods;

use minijinja::{Environment, context};

use crate::backend::{ChatMessage, Role};

/// Used when the GGUF carries no `tokenizer.chat_template`.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the model's chat template does not compile: {0}")]
    Compile(String),
    #[error("the model's chat template failed on this conversation: {0}")]
    Render(String),
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: Option<String>, eos_token: String) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.set_unknown_method_callback(python_methods::call);
        let source = source.unwrap_or_else(|| CHATML.to_string());
        env.add_template_owned("chat", source)
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(ChatTemplate { env, eos_token })
    }

    /// The prompt for `messages`, ending where the assistant's answer begins.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        let messages: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.clone() })
            .collect();
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError::Render(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => "",
                eos_token => self.eos_token,
            })
            .map_err(|e| TemplateError::Render(e.to_string()))
    }

    /// The text between an assistant's answer and the next user message — ChatML's
    /// `<|im_end|>\n<|im_start|>user\n` — found by rendering a probe conversation; `None`
    /// when the template does not render one answer followed by another question.
    pub fn next_turn_opening(&self) -> Option<String> {
        const ANSWER: &str = "mooring-probe-answer";
        const QUESTION: &str = "mooring-probe-question";
        let text = self
            .render(&[
                ChatMessage::new(Role::User, "mooring-probe-first"),
                ChatMessage::new(Role::Assistant, ANSWER),
                ChatMessage::new(Role::User, QUESTION),
            ])
            .ok()?;
        let from = text.find(ANSWER)? + ANSWER.len();
        let to = from + text[from..].find(QUESTION)?;
        Some(text[from..to].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_turns_and_generation_prompt() {
        let t = ChatTemplate::new(None, "<|im_end|>".into()).unwrap();
        let text = t
            .render(&[
                ChatMessage::new(Role::System, "Be brief."),
                ChatMessage::new(Role::User, "Hi"),
            ])
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    /// The constructs of Qwen3's template (this one written for the test): the last user
    /// query found backwards through a namespace, Python string methods, the reasoning of
    /// earlier answers dropped.
    const QWEN3_STYLE: &str = "{%- set ns = namespace(last_query=-1) %}{%- for m in messages[::-1] %}{%- if ns.last_query < 0 and m.role == 'user' and not (m.content.startswith('<tool_response>') and m.content.endswith('</tool_response>')) %}{%- set ns.last_query = (messages|length - 1) - loop.index0 %}{%- endif %}{%- endfor %}{%- for m in messages %}{%- set content = m.content %}{%- if m.role == 'assistant' and '</think>' in content %}{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}{{- '<|im_start|>' + m.role + '\\n' + content.strip() + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}{{- ns.last_query }}";

    #[test]
    fn python_string_methods_work_as_in_qwen3_templates() {
        let t = ChatTemplate::new(Some(QWEN3_STYLE.into()), "<|im_end|>".into()).unwrap();
        let text = t
            .render(&[
                ChatMessage::new(Role::User, " Hi "),
                ChatMessage::new(Role::Assistant, "<think>\nhmm\n</think>\n\nHello"),
                ChatMessage::new(Role::User, "<tool_response>42</tool_response>"),
            ])
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\n<tool_response>42</tool_response><|im_end|>\n<|im_start|>assistant\n0"
        );
    }

    #[test]
    fn python_methods_follow_python() {
        let t = |source: &str| {
            ChatTemplate::new(Some(source.into()), String::new())
                .unwrap()
                .render(&[])
                .unwrap()
        };
        assert_eq!(t("{{ ' a  b c '.split() }}"), r#"["a", "b", "c"]"#);
        assert_eq!(t("{{ ' a  b c '.split(none, 1) }}"), r#"["a", "b c "]"#);
        assert_eq!(t("{{ 'a,b,,c'.split(',') }}"), r#"["a", "b", "", "c"]"#);
        assert_eq!(t("{{ 'a,b,c'.split(',', 1) }}"), r#"["a", "b,c"]"#);
        assert_eq!(
            t(
                "{{ 'xxhixx'.strip('x') + '|' + '  hi '.lstrip() + '|' + 'hi\\n\\n'.rstrip('\\n') }}"
            ),
            "hi|hi |hi"
        );
        assert_eq!(
            t("{{ 'Hi'.upper() + 'Hi'.lower() + 'a-b'.replace('-', '+') }}"),
            "HIhia+b"
        );
        assert_eq!(
            t(
                "{% set d = {'a': 1} %}{% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %} {{ d.keys() }} {{ d.values() }} {{ d.get('a') }} {{ d.get('b', 2) }} {{ d.get('b') is none }}"
            ),
            r#"a=1 ["a"] [1] 1 2 True"#
        );
        let err = ChatTemplate::new(Some("{{ 'a'.frobnicate() }}".into()), String::new())
            .unwrap()
            .render(&[])
            .unwrap_err();
        assert!(err.to_string().contains("frobnicate"), "{err}");
    }

    #[test]
    fn the_next_turn_opens_with_the_templates_hand_over_to_the_user() {
        let chatml = ChatTemplate::new(None, "<|im_end|>".into()).unwrap();
        assert_eq!(
            chatml.next_turn_opening().as_deref(),
            Some("<|im_end|>\n<|im_start|>user\n")
        );
        let gemma = "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}{{ '<start_of_turn>' + role + '\n' + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";
        let gemma = ChatTemplate::new(Some(gemma.into()), "<eos>".into()).unwrap();
        assert_eq!(
            gemma.next_turn_opening().as_deref(),
            Some("<end_of_turn>\n<start_of_turn>user\n")
        );
        let refuses = "{{ raise_exception('no') }}";
        let refuses = ChatTemplate::new(Some(refuses.into()), "</s>".into()).unwrap();
        assert_eq!(refuses.next_turn_opening(), None);
    }

    #[test]
    fn templates_get_eos_token_and_raise_exception_fails_the_request() {
        let source = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ bos_token }}{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}";
        let t = ChatTemplate::new(Some(source.into()), "</s>".into()).unwrap();
        let user = ChatMessage::new(Role::User, "Hi");
        assert_eq!(t.render(std::slice::from_ref(&user)).unwrap(), "Hi</s>");
        let err = t
            .render(&[ChatMessage::new(Role::System, "Be brief."), user])
            .unwrap_err();
        assert!(
            err.to_string().contains("System role not supported"),
            "{err}"
        );
    }
}
