//! The gRPC `mooring.chat.v1.ChatService`: the same request path as HTTP, with API keys
//! read from the `authorization` metadata.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::backend::{ChatMessage, Role, StreamEvent, Usage};
use crate::engine::{ChatRequest, Prepared};
use crate::error::ChatError;
use crate::proto;
use crate::proto::chat_service_server::{ChatService, ChatServiceServer};
use crate::shared::Shared;

pub struct GrpcChat {
    shared: Shared,
}

impl GrpcChat {
    pub fn new(shared: Shared) -> Self {
        GrpcChat { shared }
    }

    pub fn into_server(self) -> ChatServiceServer<Self> {
        ChatServiceServer::new(self)
    }

    /// Authenticates, converts, checks and prepares a request; a refusal counts in
    /// `mooring_chat_requests_total` under `endpoint`, like the HTTP routes' refusals.
    async fn accept(
        &self,
        request: Request<proto::ChatRequest>,
        endpoint: &'static str,
    ) -> Result<(Prepared, String), Status> {
        let refused = |label: &'static str, status: Status| {
            self.shared.engine.metrics.outcome(endpoint, label);
            status
        };
        let chat = self
            .to_chat(request)
            .await
            .map_err(|(label, s)| refused(label, s))?;
        self.shared
            .check_prompt(&chat)
            .await
            .map_err(|e| refused(e.label(), e.grpc_status()))?;
        let session_id = chat.session_id.clone().unwrap_or_default();
        match self.shared.engine.prepare(chat).await {
            Ok(prepared) => Ok((prepared, session_id)),
            Err(e) => Err(refused(e.label(), e.grpc_status())),
        }
    }

    /// Authenticates, converts and checks a request; an error comes with its metric label.
    async fn to_chat(
        &self,
        request: Request<proto::ChatRequest>,
    ) -> Result<ChatRequest, (&'static str, Status)> {
        let invalid = |message: String| ("invalid_request", Status::invalid_argument(message));
        let headers = request.metadata().clone().into_headers();
        let key = self.shared.auth.identify(&headers).await.map_err(|e| {
            let status = Status::unauthenticated(
                "authorization: a valid API key or token is required (`authorization: Bearer <key>`)",
            );
            (e.label(), status)
        })?;
        self.shared.auth.admit(&key).map_err(|e| {
            let status = Status::resource_exhausted("rate limit reached for this API key");
            (e.label(), status)
        })?;
        let body = request.into_inner();
        let model = self.shared.engine.backend.model_name();
        if !body.model.is_empty() && body.model != model {
            return Err(invalid(format!(
                "model: `{}` is not served here; use `{model}`",
                body.model
            )));
        }
        let messages = match (body.messages.is_empty(), body.prompt.is_empty()) {
            (false, false) => {
                return Err(invalid(
                    "messages, prompt: give one of them, not both".into(),
                ));
            }
            (true, true) => return Err(invalid("prompt: must not be empty".into())),
            (true, false) => vec![ChatMessage::new(Role::User, body.prompt)],
            (false, true) => body
                .messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    Role::parse(&m.role)
                        .map(|role| ChatMessage::new(role, m.content))
                        .ok_or_else(|| {
                            invalid(format!(
                                "messages[{i}].role: `{}` is not one of system, user, assistant",
                                m.role
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let chat = ChatRequest {
            owner: key.as_str().to_string(),
            session_id: (!body.session_id.is_empty()).then_some(body.session_id),
            messages,
            max_tokens: body.max_tokens,
            temperature: body.temperature.map(f64::from),
            seed: body.seed,
            stop: body.stop,
        };
        Ok(chat)
    }
}

fn usage(u: Usage) -> proto::Usage {
    proto::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
    }
}

type ChatStreamResult =
    Pin<Box<dyn Stream<Item = Result<proto::ChatStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ChatService for GrpcChat {
    async fn chat(
        &self,
        request: Request<proto::ChatRequest>,
    ) -> Result<Response<proto::ChatResponse>, Status> {
        let (prepared, session_id) = self.accept(request, "grpc_chat").await?;
        let engine = &self.shared.engine;
        let done = engine
            .complete(prepared, "grpc_chat")
            .await
            .map_err(|e| e.grpc_status())?;
        Ok(Response::new(proto::ChatResponse {
            content: done.text,
            finish_reason: done.finish_reason.as_str().to_string(),
            usage: Some(usage(done.usage)),
            session_id,
            model: engine.backend.model_name().to_string(),
        }))
    }

    type ChatStreamStream = ChatStreamResult;

    async fn chat_stream(
        &self,
        request: Request<proto::ChatRequest>,
    ) -> Result<Response<Self::ChatStreamStream>, Status> {
        let (prepared, _) = self.accept(request, "grpc_chat_stream").await?;
        let engine = &self.shared.engine;
        let events = engine
            .stream(prepared, "grpc_chat_stream")
            .await
            .map_err(|e| e.grpc_status())?;
        // Dropping this stream (client gone) drops the backend stream: generation stops.
        let out = events.map(|event| match event {
            Ok(StreamEvent::Delta(delta)) => Ok(proto::ChatStreamResponse {
                delta,
                ..Default::default()
            }),
            Ok(StreamEvent::Done {
                finish_reason,
                usage: u,
            }) => Ok(proto::ChatStreamResponse {
                delta: String::new(),
                finish_reason: finish_reason.as_str().to_string(),
                usage: Some(usage(u)),
            }),
            Err(e) => Err(ChatError::from(e).grpc_status()),
        });
        Ok(Response::new(Box::pin(out)))
    }
}
