//! Shared by the remote backends: retries with exponential backoff until the first event
//! of a generation arrived (never after: tokens already sent to a client cannot be taken
//! back), a time limit on that first event, and which failures are worth another attempt.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;

use super::{BackendError, EventStream, Result};

/// How often and how patiently a remote backend is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Limit on waiting for the first event of each attempt.
    pub first_event_timeout: Duration,
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries as usize)
    }
}

/// An attempt's failure, and whether trying again may help.
#[derive(Debug)]
pub struct AttemptError {
    pub error: BackendError,
    pub retryable: bool,
}

impl AttemptError {
    pub fn retryable(error: BackendError) -> Self {
        AttemptError {
            error,
            retryable: true,
        }
    }
    pub fn fatal(error: BackendError) -> Self {
        AttemptError {
            error,
            retryable: false,
        }
    }
}

/// Maps a transport error: connection problems and timeouts are worth retrying.
pub fn from_reqwest(e: reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        AttemptError::retryable(BackendError::Timeout(e.to_string()))
    } else if e.is_connect() || e.is_request() || e.is_body() {
        AttemptError::retryable(BackendError::Unavailable(e.to_string()))
    } else {
        AttemptError::fatal(BackendError::Protocol(e.to_string()))
    }
}

/// Turns a non-success HTTP status into an attempt error: 429 and 5xx are retried.
pub async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, AttemptError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(500).collect();
    let message = format!("HTTP {status}: {body}");
    if status.as_u16() == 429 || status.is_server_error() {
        Err(AttemptError::retryable(BackendError::Unavailable(message)))
    } else if status.as_u16() == 400 || status.as_u16() == 404 || status.as_u16() == 422 {
        Err(AttemptError::fatal(BackendError::InvalidRequest(message)))
    } else {
        Err(AttemptError::fatal(BackendError::Protocol(message)))
    }
}

/// Opens a stream with `open` and waits for its first event, retrying failures that
/// happen before it. The returned stream starts with that first event.
pub async fn open_with_retry<F, Fut>(policy: RetryPolicy, mut open: F) -> Result<EventStream>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<EventStream, AttemptError>>,
{
    let attempt = || {
        let opened = open();
        async move {
            let first = async {
                let mut stream = opened.await?;
                match stream.next().await {
                    Some(Ok(first)) => Ok((first, stream)),
                    Some(Err(e)) => Err(AttemptError::retryable(e)),
                    None => Err(AttemptError::retryable(BackendError::Protocol(
                        "the response ended before any event".into(),
                    ))),
                }
            };
            match tokio::time::timeout(policy.first_event_timeout, first).await {
                Ok(outcome) => outcome,
                Err(_) => Err(AttemptError::retryable(BackendError::Timeout(format!(
                    "no answer within {:?}",
                    policy.first_event_timeout
                )))),
            }
        }
    };
    let (first, rest) = attempt
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|e: &AttemptError| e.retryable)
        .notify(|e: &AttemptError, delay: Duration| {
            tracing::warn!(error = %e.error, ?delay, "backend attempt failed; retrying");
        })
        .await
        .map_err(|e| e.error)?;
    let head = futures::stream::once(async move { Ok(first) });
    Ok(Box::pin(head.chain(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use backon::BackoffBuilder;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            first_event_timeout: Duration::from_secs(1),
        };
        let delays: Vec<u128> = p.backoff().build().map(|d| d.as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
    }
}
