//! API keys and per-key rate limits for the chat routes.
//!
//! With `--api-keys-file`, every route behind [`Auth::middleware`] needs
//! `Authorization: Bearer <key>`; a missing or unknown key gets 401 in OpenAI's error shape.
//! The request then carries the caller's [`KeyId`] in its extensions (handlers take it as an
//! extractor) — sessions and cache entries are scoped by it. Without a keys file every
//! request gets [`KeyId::anonymous`]. With `--rate-limit-per-second`, each key has its own
//! token bucket (GCRA, `governor`); an empty bucket gets 429 with `Retry-After`.
//!
//! With `--auth-jwt-issuer`, `--auth-jwt-audience` and `--auth-jwt-jwks-url` (or
//! `--auth-jwt-jwks-file`), a bearer shaped like a JWT is verified as one (see [`jwt`]) and
//! the caller is its subject; anything else is still looked up as an API key, so both kinds
//! of callers can be served at once.
//!
//! ```no_run
//! # use mooring_chat::auth::{Auth, AuthArgs};
//! # async fn demo(args: AuthArgs, chat_routes: axum::Router) -> Result<(), mooring_chat::auth::AuthError> {
//! let auth = Auth::from_args(&args)?; // also starts the keys-file reloader
//! let app = chat_routes.layer(axum::middleware::from_fn_with_state(auth, Auth::middleware));
//! # Ok(()) }
//! ```

pub mod jwt;
mod keys;
mod limit;

pub use keys::{ApiKeys, KeySet, KeysFileError};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jwt::{JwksSource, JwtPolicy, JwtVerifier};
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
    /// Accept bearer JWTs from this issuer (the `iss` claim, e.g. the OIDC provider's URL).
    /// Needs `--auth-jwt-audience` and a JWKS (URL or file).
    #[arg(long = "auth-jwt-issuer", env = "MOORING_AUTH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The audience tokens must be issued for (one of the `aud` values).
    #[arg(long = "auth-jwt-audience", env = "MOORING_AUTH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// URL of the provider's JWKS (its `jwks_uri`), read at start, periodically, and when a
    /// token names an unknown key id.
    #[arg(
        long = "auth-jwt-jwks-url",
        env = "MOORING_AUTH_JWT_JWKS_URL",
        conflicts_with = "jwt_jwks_file"
    )]
    pub jwt_jwks_url: Option<String>,
    /// A JWKS file instead of a URL (re-read on the same schedule).
    #[arg(long = "auth-jwt-jwks-file", env = "MOORING_AUTH_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// The claim naming the caller; sessions and rate limits belong to it.
    #[arg(
        long = "auth-jwt-subject-claim",
        env = "MOORING_AUTH_JWT_SUBJECT_CLAIM",
        default_value = "sub"
    )]
    pub jwt_subject_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(
        long = "auth-jwt-leeway-seconds",
        env = "MOORING_AUTH_JWT_LEEWAY_SECONDS",
        default_value_t = 30
    )]
    pub jwt_leeway_seconds: u64,
    /// How often to re-read the JWKS, in seconds.
    #[arg(
        long = "auth-jwt-jwks-refresh-seconds",
        env = "MOORING_AUTH_JWT_JWKS_REFRESH_SECONDS",
        default_value_t = 300
    )]
    pub jwt_jwks_refresh_seconds: u64,
    /// Least time between two JWKS reads prompted by unknown key ids, in seconds.
    #[arg(
        long = "auth-jwt-jwks-min-refetch-seconds",
        env = "MOORING_AUTH_JWT_JWKS_MIN_REFETCH_SECONDS",
        default_value_t = 10
    )]
    pub jwt_jwks_min_refetch_seconds: u64,
}

impl Default for AuthArgs {
    /// The flags' defaults (from their `default_value`s, not the environment).
    fn default() -> Self {
        crate::config::clap_defaults()
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
    #[error("auth-jwt: {0}")]
    JwtConfig(&'static str),
    #[error(transparent)]
    Jwks(#[from] jwt::JwksError),
}

/// The identity a request was made with: the key's name from the keys file, `key-` and a
/// prefix of its hash when unnamed, `jwt:<subject>` for a JWT, or `anonymous`. Never the
/// secret itself. Key names cannot hold `:`, so a subject never collides with a key.
///
/// [`KeyId::as_str`] is the owner of sessions and cache entries; `Display` is the bounded,
/// non-identifying label for logs (a JWT subject shows as `sub-` and a hash prefix).
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

    /// The id of a JWT's subject.
    pub fn subject(subject: &str) -> Self {
        Self::new(format!("jwt:{subject}"))
    }

    /// The id as text: the owner of sessions. For a JWT it holds the subject, so log
    /// [`KeyId::label`] (or the `Display` form) instead.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Safe to log: the key's name, or for a JWT subject `sub-` and 12 hex digits of its hash
    /// (people's identifiers stay out of logs, and the label stays short).
    pub fn label(&self) -> String {
        match self.0.strip_prefix("jwt:") {
            Some(subject) => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(subject.as_bytes());
                format!("sub-{}", &hex::encode(digest)[..12])
            }
            None => self.0.to_string(),
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.label())
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
    jwt: Option<JwtVerifier>,
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

    /// [`Auth::from_args`], then reads the JWKS (a provider that cannot be reached at start
    /// is an error: fail closed and visibly) and starts its periodic refresh.
    pub async fn start(args: &AuthArgs) -> Result<Self, AuthError> {
        let auth = Self::from_args(args)?;
        if let Some(jwt) = &auth.jwt {
            jwt.refresh().await?;
            let interval = Duration::from_secs(args.jwt_jwks_refresh_seconds.max(1));
            jwt.spawn_refresher(&tokio::runtime::Handle::current(), interval);
        }
        Ok(auth)
    }

    /// Builds it without starting the reloader (tests call [`ApiKeys::reload_if_changed`]).
    pub fn new(args: &AuthArgs) -> Result<Self, AuthError> {
        if !(args.reload_seconds.is_finite() && args.reload_seconds > 0.0) {
            return Err(AuthError::BadReloadInterval(args.reload_seconds));
        }
        let keys = args.api_keys_file.as_ref().map(ApiKeys::load).transpose()?;
        let jwt = jwt_verifier(args)?;
        let limiter = KeyedLimiter::new(args.rate_limit_per_second, args.rate_limit_burst)
            .map_err(|()| AuthError::BadRate(args.rate_limit_per_second))?
            .map(Arc::new);
        Ok(Self { keys, jwt, limiter })
    }

    /// The loaded keys, when a keys file is configured.
    pub fn keys(&self) -> Option<&ApiKeys> {
        self.keys.as_ref()
    }

    /// Who is calling, from the `Authorization` header (for gRPC, pass the request metadata
    /// as headers: `metadata().clone().into_headers()`).
    pub async fn identify(&self, headers: &axum::http::HeaderMap) -> Result<KeyId, Rejection> {
        if self.keys.is_none() && self.jwt.is_none() {
            return Ok(KeyId::anonymous());
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110).
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, secret)| secret.trim());
        match presented {
            None | Some("") => Err(Rejection::MissingKey),
            Some(token) if jwt::is_jwt_shaped(token) && self.jwt.is_some() => {
                let verifier = self.jwt.as_ref().expect("checked");
                verifier.verify(token).await.map_err(|rejected| {
                    tracing::debug!(reason = rejected.0, "bearer JWT refused");
                    Rejection::InvalidToken { reason: rejected.0 }
                })
            }
            Some(secret) => self
                .keys
                .as_ref()
                .and_then(|keys| keys.verify(secret))
                .ok_or(Rejection::InvalidKey),
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
        let key = match auth.identify(request.headers()).await {
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
    #[error("Authorization: the bearer token is not valid: {reason}")]
    InvalidToken { reason: &'static str },
    #[error("Rate limit reached for key {key}: retry in {retry_after_secs} s")]
    RateLimited { key: KeyId, retry_after_secs: u64 },
}

impl Rejection {
    /// A short label for metrics (`mooring_chat_requests_total{outcome}`).
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::MissingKey | Rejection::InvalidKey | Rejection::InvalidToken { .. } => {
                "unauthorized"
            }
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
            Rejection::MissingKey | Rejection::InvalidKey | Rejection::InvalidToken { .. } => {
                // `param` names what is wrong: the header the key goes in.
                let mut response = openai_error(
                    StatusCode::UNAUTHORIZED,
                    &message,
                    "invalid_request_error",
                    Some("Authorization"),
                    "invalid_api_key",
                );
                // RFC 6750 §3: a presented but unusable token gets `error="invalid_token"`.
                let challenge = match &self {
                    Rejection::InvalidToken { .. } => "Bearer error=\"invalid_token\"",
                    _ => "Bearer",
                };
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
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

/// The JWT verifier the flags ask for, if any (all three of issuer, audience and a JWKS, or
/// none of them).
fn jwt_verifier(args: &AuthArgs) -> Result<Option<JwtVerifier>, AuthError> {
    let source = match (&args.jwt_jwks_url, &args.jwt_jwks_file) {
        (Some(url), _) => Some(JwksSource::Url(url.clone())),
        (None, Some(path)) => Some(JwksSource::File(path.clone())),
        (None, None) => None,
    };
    let (issuer, audience, source) = match (&args.jwt_issuer, &args.jwt_audience, source) {
        (None, None, None) => return Ok(None),
        (Some(issuer), Some(audience), Some(source)) => (issuer, audience, source),
        _ => {
            return Err(AuthError::JwtConfig(
                "--auth-jwt-issuer, --auth-jwt-audience and --auth-jwt-jwks-url (or -file) go together",
            ));
        }
    };
    if args.jwt_subject_claim.is_empty() {
        return Err(AuthError::JwtConfig("--auth-jwt-subject-claim is empty"));
    }
    let policy = JwtPolicy {
        issuer: issuer.clone(),
        audience: audience.clone(),
        subject_claim: args.jwt_subject_claim.clone(),
        leeway: Duration::from_secs(args.jwt_leeway_seconds),
        min_refetch: Duration::from_secs(args.jwt_jwks_min_refetch_seconds),
    };
    Ok(Some(JwtVerifier::new(policy, source)))
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
