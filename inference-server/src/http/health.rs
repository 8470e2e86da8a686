//! Kubernetes probes and Prometheus metrics.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let not_ready = |body| (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body));
    if !state.is_ready() {
        return not_ready(serde_json::json!({"status": "not ready"}));
    }
    match &state.probe {
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        ),
        Some(probe) => match probe.check().await {
            Ok(details) => (
                StatusCode::OK,
                axum::Json(serde_json::json!({"status": "ready", probe.name(): details})),
            ),
            Err(details) => {
                not_ready(serde_json::json!({"status": "not ready", probe.name(): details}))
            }
        },
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
