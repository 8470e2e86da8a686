//! The metrics and probe server: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::process::{Health, Role};

/// What the probe server reads.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    /// Standby replicas are ready too (they are healthy, just not leading), so a rolling
    /// update of the operator never stalls.
    pub health: Arc<Health>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.alive() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not alive: the controllers have stopped",
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match (state.health.ready(), state.health.role()) {
        (true, Role::Leading) => (StatusCode::OK, "ready: leading"),
        (true, _) => (StatusCode::OK, "ready: standing by"),
        (false, Role::Stopped) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: stopped"),
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Kubernetes API has not answered yet",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_path(app: Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn probes_and_metrics() {
        let state = AppState {
            metrics: Metrics::new().unwrap(),
            health: Arc::new(Health::default()),
        };
        state
            .metrics
            .reconciles
            .with_label_values(&["modeldeployment", "ok"])
            .inc();
        let app = app(state.clone());
        assert_eq!(get_path(app.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_path(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.health.set_api_reachable();
        state.health.set_role(Role::Standby);
        assert_eq!(
            get_path(app.clone(), "/readyz").await.1,
            "ready: standing by"
        );
        state.health.set_role(Role::Leading);
        state.metrics.leader.set(1);
        assert_eq!(get_path(app.clone(), "/readyz").await.1, "ready: leading");
        state.health.set_role(Role::Stopped);
        assert_eq!(
            get_path(app.clone(), "/healthz").await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "a replica whose controllers stopped is not alive"
        );
        let (status, body) = get_path(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("mooring_operator_reconciles_total"), "{body}");
        assert!(body.contains("mooring_operator_leader 1"), "{body}");
    }
}
