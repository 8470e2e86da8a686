//! Shared by the remote backends: retries with exponential backoff until the first event
//! of a generation arrived (never after: tokens already sent to a client cannot be taken
//! back), a time limit on that first event, and splitting a response body into lines.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};

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
    fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
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

/// Opens a stream with `open` and waits for its first event, retrying failures that
/// happen before it. The returned stream starts with that first event.
pub async fn open_with_retry<F, Fut>(policy: RetryPolicy, mut open: F) -> Result<EventStream>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<EventStream, AttemptError>>,
{
    let mut retry = 0;
    loop {
        let attempt = async {
            let mut stream = open().await?;
            match stream.next().await {
                Some(Ok(first)) => Ok((first, stream)),
                Some(Err(e)) => Err(AttemptError::retryable(e)),
                None => Err(AttemptError::retryable(BackendError::Protocol(
                    "the response ended before any event".into(),
                ))),
            }
        };
        let outcome = match tokio::time::timeout(policy.first_event_timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AttemptError::retryable(BackendError::Timeout(format!(
                "no answer within {:?}",
                policy.first_event_timeout
            )))),
        };
        match outcome {
            Ok((first, rest)) => {
                let head = futures::stream::once(async move { Ok(first) });
                return Ok(Box::pin(head.chain(rest)));
            }
            Err(e) if e.retryable && retry < policy.max_retries => {
                let delay = policy.delay(retry);
                tracing::warn!(error = %e.error, retry = retry + 1, ?delay, "backend attempt failed; retrying");
                tokio::time::sleep(delay).await;
                retry += 1;
            }
            Err(e) => return Err(e.error),
        }
    }
}

/// Splits a response body into lines (without `\n`/`\r\n`); a last line without a newline
/// is yielded too.
pub fn lines(response: reqwest::Response) -> impl Stream<Item = Result<String>> + Send {
    async_stream::try_stream! {
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BackendError::Unavailable(format!("reading the response: {e}")))?;
            buffer.extend_from_slice(&chunk);
            while let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=newline).collect();
                yield decode_line(&line[..line.len() - 1])?;
            }
        }
        if !buffer.is_empty() {
            yield decode_line(&buffer)?;
        }
    }
}

fn decode_line(bytes: &[u8]) -> Result<String> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8(bytes.to_vec())
        .map_err(|_| BackendError::Protocol("the response is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            first_event_timeout: Duration::from_secs(1),
        };
        assert_eq!(p.delay(0), Duration::from_millis(100));
        assert_eq!(p.delay(1), Duration::from_millis(200));
        assert_eq!(p.delay(2), Duration::from_millis(350));
    }
}
