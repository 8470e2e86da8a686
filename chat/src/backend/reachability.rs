//! The reachability probe of a remote backend, behind the `BackendReachable` condition and
//! `/readyz`.

use std::time::Duration;

use super::retry::check_status;
use super::{BackendError, Result};

/// A reachability probe (`BackendReachable`): `request` must answer 2xx within 3 s.
pub async fn probe(request: reqwest::RequestBuilder, url: &str) -> Result<()> {
    let response = request
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| BackendError::Unavailable(format!("{url}: {e}")))?;
    check_status(response)
        .await
        .map(|_| ())
        .map_err(|e| e.error)
}
