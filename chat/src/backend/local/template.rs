//! Renders a conversation into the prompt text the model was trained on, using the Jinja
//! chat template from the GGUF metadata (ChatML for SmolLM2). Models without a template
//! get plain ChatML.
//!
//! Templates may write `bos_token` (Llama 3, Mistral, Gemma): it renders empty, as llama.cpp
//! adds the BOS token itself when the GGUF asks for it (`tokenizer.ggml.add_bos_token`), and
//! twice would be wrong. `eos_token` renders as the model's, and `raise_exception` fails the
//! request with the template's message (Gemma refuses a system message that way).

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
