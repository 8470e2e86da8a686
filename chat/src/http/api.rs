//! The friendly API: `POST /api/v1/chat` (one prompt in a session), the caller's sessions,
//! and stateless `generate` / `generate-secure`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    API_CHAT, API_GENERATE, API_GENERATE_SECURE, Body, Caller, counted, parse_json, session_id,
};
use crate::backend::{ChatMessage, Role};
use crate::engine::{ChatRequest, Prepared, validate_session_id};
use crate::error::{ChatError, Result};
use crate::memory::Session;
use crate::shared::Shared;

#[derive(Debug, Deserialize)]
struct PromptRequest {
    prompt: String,
    session_id: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    seed: Option<u64>,
    #[serde(default)]
    stop: Vec<String>,
}

impl PromptRequest {
    fn into_chat(self, owner: String, session_id: Option<String>) -> Result<ChatRequest> {
        if self.prompt.trim().is_empty() {
            return Err(ChatError::invalid("prompt", "must not be empty"));
        }
        Ok(ChatRequest {
            owner,
            session_id,
            messages: vec![ChatMessage::new(Role::User, self.prompt)],
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            seed: self.seed,
            stop: self.stop,
        })
    }
}

fn session_json(session: &Session) -> Value {
    json!({
        "session_id": session.id,
        "messages": session.messages,
        "conversation_length": session.turns(),
        "memory_stats": session.stats(),
    })
}

/// `{prompt, session_id?}` → `{response, session_id, conversation_length, memory_stats}`;
/// a new session id is made up when none is given.
pub async fn chat(
    State(shared): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let accepted = async {
        let request: PromptRequest = parse_json(body)?;
        let id = session_id(&headers, request.session_id.clone())?
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let chat = request.into_chat(caller.owner, Some(id.clone()))?;
        shared.check_prompt(&chat).await?;
        Ok((id, shared.engine.prepare(chat).await?))
    };
    let (id, prepared) = counted(&shared, API_CHAT, accepted.await)?;
    let done = shared.engine.complete(prepared, API_CHAT).await?;
    let session = done.session.unwrap_or_default();
    Ok(Json(json!({
        "response": done.text,
        "session_id": id,
        "conversation_length": session.turns(),
        "memory_stats": session.stats(),
        "finish_reason": done.finish_reason.as_str(),
        "usage": done.usage,
    })))
}

pub async fn get_session(
    State(shared): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    validate_session_id(&id)?;
    match shared.engine.store.load(&caller.owner, &id).await? {
        Some(session) => Ok(Json(session_json(&session))),
        None => Err(ChatError::SessionNotFound(id)),
    }
}

pub async fn delete_session(
    State(shared): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    validate_session_id(&id)?;
    if shared.engine.store.delete(&caller.owner, &id).await? {
        Ok(Json(json!({"session_id": id, "deleted": true})))
    } else {
        Err(ChatError::SessionNotFound(id))
    }
}

/// Sessions listed per page unless `?limit=` says otherwise, and the most allowed.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// `?limit=&after=` of `GET /api/v1/sessions`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
}

/// The caller's own sessions only, in id order, a page at a time: `next_cursor` is the
/// `after` of the next page (`null` on the last one).
pub async fn list_sessions(
    State(shared): State<Shared>,
    caller: Caller,
    query: std::result::Result<
        axum::extract::Query<PageQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<Value>> {
    let axum::extract::Query(query) = query.map_err(|_| {
        ChatError::invalid(
            "limit",
            "limit must be a whole number and after a session id",
        )
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ChatError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let page = shared
        .engine
        .store
        .list_page(&caller.owner, query.after.as_deref(), limit)
        .await?;
    Ok(Json(json!({
        "sessions": page.ids,
        "count": page.ids.len(),
        "next_cursor": page.next,
    })))
}

/// Stateless generation: no session, no memory.
pub async fn generate(
    State(shared): State<Shared>,
    caller: Caller,
    body: Body,
) -> Result<Json<Value>> {
    let accepted = async {
        let request: PromptRequest = parse_json(body)?;
        reject_session(&request)?;
        let chat = request.into_chat(caller.owner, None)?;
        let guard = shared.check_prompt(&chat).await?;
        Ok((guard, shared.engine.prepare(chat).await?))
    };
    let (guard, prepared) = counted(&shared, API_GENERATE, accepted.await)?;
    let mut response = run_stateless(&shared, prepared, API_GENERATE).await?;
    if guard.is_some() {
        response["guard_flagged"] = json!(true);
    }
    Ok(Json(response))
}

/// Like `generate`, with the guard's analysis of the prompt beside the answer. A blocked
/// prompt gets 400 with the analysis.
pub async fn generate_secure(
    State(shared): State<Shared>,
    caller: Caller,
    body: Body,
) -> Result<Json<Value>> {
    let accepted = async {
        let request: PromptRequest = parse_json(body)?;
        reject_session(&request)?;
        let chat = request.into_chat(caller.owner, None)?;
        let analysis = shared.analyze_prompt(&chat).await?;
        Ok((analysis, shared.engine.prepare(chat).await?))
    };
    let (analysis, prepared) = counted(&shared, API_GENERATE_SECURE, accepted.await)?;
    let mut response = run_stateless(&shared, prepared, API_GENERATE_SECURE).await?;
    response["guard"] = analysis;
    Ok(Json(response))
}

fn reject_session(request: &PromptRequest) -> Result<()> {
    if request.session_id.is_some() {
        return Err(ChatError::invalid(
            "session_id",
            "generate is stateless; use /api/v1/chat for sessions",
        ));
    }
    Ok(())
}

async fn run_stateless(
    shared: &Shared,
    prepared: Prepared,
    endpoint: &'static str,
) -> Result<Value> {
    let done = shared.engine.complete(prepared, endpoint).await?;
    Ok(json!({
        "response": done.text,
        "model": shared.engine.backend.model_name(),
        "finish_reason": done.finish_reason.as_str(),
        "usage": done.usage,
    }))
}
