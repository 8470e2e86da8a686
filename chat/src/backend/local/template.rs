//! Renders a conversation into the prompt text the model was trained on, using the Jinja
//! chat template from the GGUF metadata (ChatML for SmolLM2). Models without a template
//! get plain ChatML.

use minijinja::{Environment, context};

use crate::backend::ChatMessage;

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
}

impl ChatTemplate {
    pub fn new(source: Option<String>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let source = source.unwrap_or_else(|| CHATML.to_string());
        env.add_template_owned("chat", source)
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(ChatTemplate { env })
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
            .render(context! { messages => messages, add_generation_prompt => true })
            .map_err(|e| TemplateError::Render(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Role;

    #[test]
    fn chatml_fallback_renders_turns_and_generation_prompt() {
        let t = ChatTemplate::new(None).unwrap();
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
}
