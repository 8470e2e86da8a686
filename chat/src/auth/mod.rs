//! API keys and per-key rate limits for the chat routes.
//!
//! With `--api-keys-file`, every route behind [`Auth::middleware`] needs
//! `Authorization: Bearer <key>`; a missing or unknown key gets 401 in OpenAI's error shape.
//! The request then carries the caller's [`KeyId`] in its extensions (handlers take it as an
//! extractor) — sessions and cache entries are scoped by it. Without a keys file every
//! request gets [`KeyId::anonymous`]. With `--rate-limit-per-second`, each key has its own
//! token bucket (GCRA, `governor`); an empty bucket gets 429 with `Retry-After`.
//!
//! ```no_run
//! # use mooring_chat::auth::{Auth, AuthArgs};
//! # async fn demo(args: AuthArgs, chat_routes: axum::Router) -> Result<(), mooring_chat::auth::AuthError> {
//! let auth = Auth::from_args(&args)?; // also starts the keys-file reloader
//! let app = chat_routes.layer(axum::middleware::from_fn_with_state(auth, Auth::middleware));
//! # Ok(()) }
//! ```

mod keys;
mod limit;

pub use keys::{ApiKeys, KeySet, KeysFileError};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use limit::KeyedLimiter;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Command-line flags of API-key authentication and rate limiting.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// File of accepted API keys, hashed: one `sha256:<hex> [name]` per line (make one with
    /// `printf %s "$KEY" | sha256sum`). Re-read when it changes. Without it the chat routes
    /// are open and every caller shares the anonymous identity.
    #[arg(long = "api-keys-file", env = "MOORING_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// How often to check the keys file for changes, in seconds.
    #[arg(
        long = "api-keys-reload-seconds",
        env = "MOORING_API_KEYS_RELOAD_SECONDS",
        default_value_t = 5.0
    )]
    pub reload_seconds: f64,
    /// Requests per second allowed per API key (fractions allowed); 0 = no rate limit.
    #[arg(
        long = "rate-limit-per-second",
        env = "MOORING_RATE_LIMIT_PER_SECOND",
        default_value_t = 0.0
    )]
    pub rate_limit_per_second: f64,
    /// Requests a key may send at once before the per-second rate applies; 0 = the rate rounded up.
    #[arg(
        long = "rate-limit-burst",
        env = "MOORING_RATE_LIMIT_BURST",
        default_value_t = 0
    )]
    pub rate_limit_burst: u32,
}

impl Default for AuthArgs {
    fn default() -> Self {
        Self {
            api_keys_file: None,
            reload_seconds: 5.0,
            rate_limit_per_second: 0.0,
            rate_limit_burst: 0,
        }
    }
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    KeysFile(#[from] KeysFileError),
    #[error("rate-limit-per-second: {0} is not a finite number ≥ 0")]
    BadRate(f64),
    #[error("api-keys-reload-seconds: {0} is not a finite number > 0")]
    BadReloadInterval(f64),
    #[error("api-keys-file: reloading needs a tokio runtime; call Auth::from_args inside one")]
    NoRuntime,
}

/// The identity a request was made with: the key's name from the keys file, `key-` and a
/// prefix of its hash when unnamed, or `anonymous`. Never the secret itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// An id from its text.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id of every request when no keys file is configured.
    pub fn anonymous() -> Self {
        Self::new("anonymous")
    }

    /// The id as text (safe to log and to use as a metric label).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Handlers take `key: KeyId`. A route not wrapped by [`Auth::middleware`] is a wiring bug:
/// it answers 500 rather than silently treating the caller as anonymous.
impl<S: Send + Sync> FromRequestParts<S> for KeyId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<KeyId>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "route has no auth middleware");
            openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "authentication is not configured for this route",
                "server_error",
                None,
                "internal_error",
            )
        })
    }
}

/// Authentication and rate limiting, shared by all requests (cheap to clone).
#[derive(Clone)]
pub struct Auth {
    keys: Option<ApiKeys>,
    limiter: Option<Arc<KeyedLimiter>>,
}

impl Auth {
    /// Builds it from its flags and, when a keys file is given, starts polling the file for
    /// changes (needs a tokio runtime).
    pub fn from_args(args: &AuthArgs) -> Result<Self, AuthError> {
        let auth = Self::new(args)?;
        if let Some(keys) = &auth.keys {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| AuthError::NoRuntime)?;
            keys.spawn_reloader(&runtime, Duration::from_secs_f64(args.reload_seconds));
        }
        Ok(auth)
    }

    /// Builds it without starting the reloader (tests call [`ApiKeys::reload_if_changed`]).
    pub fn new(args: &AuthArgs) -> Result<Self, AuthError> {
        if !(args.reload_seconds.is_finite() && args.reload_seconds > 0.0) {
            return Err(AuthError::BadReloadInterval(args.reload_seconds));
        }
        let keys = args.api_keys_file.as_ref().map(ApiKeys::load).transpose()?;
        let limiter = KeyedLimiter::new(args.rate_limit_per_second, args.rate_limit_burst)
            .map_err(|()| AuthError::BadRate(args.rate_limit_per_second))?
            .map(Arc::new);
        Ok(Self { keys, limiter })
    }

    /// The loaded keys, when a keys file is configured.
    pub fn keys(&self) -> Option<&ApiKeys> {
        self.keys.as_ref()
    }

    /// Who is calling, from the `Authorization` header (for gRPC, pass the request metadata
    /// as headers: `metadata().clone().into_headers()`).
    pub fn identify(&self, headers: &axum::http::HeaderMap) -> Result<KeyId, Rejection> {
        let Some(keys) = &self.keys else {
            return Ok(KeyId::anonymous());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110).
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, secret)| secret.trim());
        match presented {
            None | Some("") => Err(Rejection::MissingKey),
            Some(secret) => keys.verify(secret).ok_or(Rejection::InvalidKey),
        }
    }

    /// Takes one request from the key's bucket, or says how long to wait.
    pub fn admit(&self, key: &KeyId) -> Result<(), Rejection> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check(key).map_err(|wait| {
            // Whole seconds, rounded up: "Retry-After: 0" would invite an immediate retry.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Rejection::RateLimited {
                key: key.clone(),
                retry_after_secs: seconds.max(1),
            }
        })
    }

    /// axum middleware: authenticate, rate-limit, put the [`KeyId`] into the request's
    /// extensions. Use with `axum::middleware::from_fn_with_state(auth, Auth::middleware)`.
    pub async fn middleware(
        State(auth): State<Auth>,
        mut request: Request,
        next: Next,
    ) -> Response {
        let key = match auth.identify(request.headers()) {
            Ok(key) => key,
            Err(rejection) => return rejection.into_response(),
        };
        if let Err(rejection) = auth.admit(&key) {
            tracing::debug!(key = %key, "rate limited");
            return rejection.into_response();
        }
        request.extensions_mut().insert(key);
        next.run(request).await
    }
}

/// Why a request was turned away. As an HTTP response: 401 (with `WWW-Authenticate: Bearer`)
/// or 429 (with `Retry-After`), in OpenAI's error shape; gRPC callers map it to
/// `UNAUTHENTICATED` / `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Authorization: an API key is required (`Authorization: Bearer <key>`)")]
    MissingKey,
    #[error("Authorization: the API key is not valid")]
    InvalidKey,
    #[error("Rate limit reached for key {key}: retry in {retry_after_secs} s")]
    RateLimited { key: KeyId, retry_after_secs: u64 },
}

impl Rejection {
    /// A short label for metrics (`mooring_chat_requests_total{outcome}`).
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::MissingKey | Rejection::InvalidKey => "unauthorized",
            Rejection::RateLimited { .. } => "rate_limited",
        }
    }
}

/// The response carries the rejection in its extensions, so a layer outside the middleware
/// can count it.
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let mut response = match &self {
            Rejection::MissingKey | Rejection::InvalidKey => {
                // `param` names what is wrong: the header the key goes in.
                let mut response = openai_error(
                    StatusCode::UNAUTHORIZED,
                    &message,
                    "invalid_request_error",
                    Some("Authorization"),
                    "invalid_api_key",
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Rejection::RateLimited {
                retry_after_secs, ..
            } => {
                let mut response = openai_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    &message,
                    "rate_limit_error",
                    None,
                    "rate_limit_exceeded",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                response
            }
        };
        response.extensions_mut().insert(self);
        response
    }
}

/// A response in OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.
pub fn openai_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: &str,
) -> Response {
    let body = serde_json::json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    });
    (status, axum::Json(body)).into_response()
}
