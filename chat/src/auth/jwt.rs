//! Bearer JWTs from the organisation's identity provider (OIDC access or ID tokens).
//!
//! A token is accepted when it is signed (RS256 or ES256 only: `none` and HMAC are refused,
//! so a public key can never be used as an HMAC secret) by a key of the provider's JWKS, its
//! `exp`/`nbf` hold within a small leeway, and `iss` and `aud` are the configured ones. The
//! caller is the subject claim (`sub` by default), as [`KeyId::subject`].
//!
//! The JWKS is read at start, re-read periodically, and re-read when a token names a `kid`
//! the set does not hold (the provider rotated its keys) — at most once per
//! `min_refetch` however many such tokens arrive, so bogus `kid`s cannot make the server
//! hammer the provider.

use super::KeyId;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Why a JWT was refused: a short reason, safe to show the caller (it says nothing about the
/// token's content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRejected(pub &'static str);

/// Why the JWKS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("auth-jwt-jwks: fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("auth-jwt-jwks-file {path}: {message}")]
    File { path: String, message: String },
    #[error("auth-jwt-jwks: {0}")]
    Parse(String),
}

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    pub issuer: String,
    pub audience: String,
    pub subject_claim: String,
    pub leeway: Duration,
    /// Least time between two reads of the JWKS prompted by unknown `kid`s.
    pub min_refetch: Duration,
}

/// One usable verification key.
struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies bearer JWTs against the provider's keys (cheap to clone: shared).
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    policy: JwtPolicy,
    source: JwksSource,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<VerifyingKey>>>,
    /// When the JWKS was last read on behalf of an unknown `kid`; the async mutex also makes
    /// concurrent requests with the new `kid` wait for one read instead of each starting one.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Whether a bearer credential looks like a JWT (three base64url parts, a JSON header), so it
/// is verified as one rather than looked up as an API key.
pub fn is_jwt_shaped(bearer: &str) -> bool {
    let parts: Vec<&str> = bearer.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl JwtVerifier {
    /// A verifier with no keys yet; call [`JwtVerifier::refresh`] (the first token with a `kid`
    /// does it too).
    pub fn new(policy: JwtPolicy, source: JwksSource) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain reqwest client builds");
        Self {
            inner: Arc::new(Inner {
                policy,
                source,
                http,
                keys: RwLock::new(Arc::new(Vec::new())),
                last_refetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Reads the JWKS and installs its RS256/ES256 keys (others are skipped). On failure the
    /// keys in force stay.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let text = match &self.inner.source {
            JwksSource::Url(url) => {
                let fetch = |message: String| JwksError::Fetch {
                    url: url.clone(),
                    message,
                };
                let response = self
                    .inner
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| fetch(e.to_string()))?;
                if !response.status().is_success() {
                    return Err(fetch(format!("HTTP {}", response.status())));
                }
                response.text().await.map_err(|e| fetch(e.to_string()))?
            }
            JwksSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| JwksError::File {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
        };
        let set: JwkSet =
            serde_json::from_str(&text).map_err(|e| JwksError::Parse(e.to_string()))?;
        let keys: Vec<VerifyingKey> = set.keys.iter().filter_map(usable).collect();
        let count = keys.len();
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        tracing::info!(keys = count, "loaded the JWKS");
        Ok(count)
    }

    /// Re-reads the JWKS every `interval` until every clone of this verifier is dropped.
    pub fn spawn_refresher(&self, runtime: &tokio::runtime::Handle, interval: Duration) {
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; start-up already read it
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(error) = (JwtVerifier { inner }).refresh().await {
                    tracing::warn!(%error, "JWKS refresh failed; keeping the previous keys");
                }
            }
        });
    }

    /// The caller's identity, or why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<KeyId, TokenRejected> {
        // The algorithm is checked first, on the raw header: `none` (which the JWT library
        // cannot even parse) and HMAC are refused by name, whatever else the token holds.
        if !matches!(header_alg(token).as_deref(), Some("RS256" | "ES256")) {
            return Err(TokenRejected("unsupported signing algorithm"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenRejected("malformed token"))?;
        let kid = header.kid.as_deref();
        let keys = match self.find(kid, header.alg) {
            Some(keys) => keys,
            None => {
                self.refetch_for_unknown_kid().await;
                self.find(kid, header.alg)
                    .ok_or(TokenRejected("unknown signing key"))?
            }
        };
        let policy = &self.inner.policy;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&policy.issuer]);
        validation.set_audience(&[&policy.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = policy.leeway.as_secs();
        let (all, index) = keys;
        let key = &all[index].key;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )
        .map_err(|e| TokenRejected(reason(e.kind())))?;
        match data.claims.get(&policy.subject_claim) {
            Some(serde_json::Value::String(subject)) if !subject.is_empty() => {
                Ok(KeyId::subject(subject))
            }
            _ => Err(TokenRejected("the token has no subject")),
        }
    }

    /// The key for this `kid` and algorithm; without a `kid`, the only key of the algorithm.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<(Arc<Vec<VerifyingKey>>, usize)> {
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut candidates = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid));
        let (index, _) = candidates.next()?;
        if kid.is_none() && candidates.next().is_some() {
            return None; // ambiguous: a token without `kid` needs a one-key set
        }
        Some((keys, index))
    }

    async fn refetch_for_unknown_kid(&self) {
        let mut last = self.inner.last_refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.inner.policy.min_refetch) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "JWKS re-read for an unknown kid failed");
        }
    }
}

/// The `alg` of a token's header, when the header is base64url JSON with a string `alg`.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let encoded = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&json).ok()?;
    header.get("alg")?.as_str().map(str::to_string)
}

/// A JWKS entry as a verification key, when it is an RSA or P-256 signing key.
fn usable(jwk: &Jwk) -> Option<VerifyingKey> {
    use jsonwebtoken::jwk::{EllipticCurve, KeyAlgorithm, PublicKeyUse};
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    let declared = jwk.common.key_algorithm;
    let matches_declared = match declared {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    if !matches_declared {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// The reason shown to the caller for a failed decode.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::InvalidAlgorithm => "unsupported signing algorithm",
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape_is_told_from_api_keys() {
        assert!(is_jwt_shaped("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."));
        assert!(is_jwt_shaped("eyJa.eyJb.c2ln"));
        assert!(!is_jwt_shaped("sk-live-1234"));
        assert!(!is_jwt_shaped("a.b.c"));
        assert!(!is_jwt_shaped("eyJa.eyJb.c2ln.d"));
        assert!(!is_jwt_shaped("eyJa.eyJ b.c"));
    }
}
