//! Shared by the remote backends: retries with exponential backoff until the first event
//! of a generation arrived (never after: tokens already sent to a client cannot be taken
//! back), a time limit on that first event, and splitting a response body into lines of
//! bounded length (an upstream that never sends a newline cannot grow our memory).

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

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

/// Longest line (an SSE field, an NDJSON object) read from a backend: a token's chunk is a
/// few hundred bytes, a final one with usage and logprobs a few KiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;

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

/// Splits a response body into lines (without `\n`/`\r\n`); a last line without a newline
/// is yielded too.
pub fn lines(response: reqwest::Response) -> impl Stream<Item = Result<String>> + Send {
    lines_of(response.bytes_stream())
}

/// [`lines`] of any byte stream; a line longer than [`MAX_LINE_BYTES`] or not UTF-8 ends
/// the stream with a protocol error.
pub fn lines_of<S, E>(body: S) -> impl Stream<Item = Result<String>> + Send
where
    S: Stream<Item = std::result::Result<bytes::Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let reader = StreamReader::new(body.map_err(|e| std::io::Error::other(e.to_string())));
    FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE_BYTES))
        .map_err(|e| match e {
            LinesCodecError::MaxLineLengthExceeded => BackendError::Protocol(format!(
                "a line of the response is longer than {MAX_LINE_BYTES} bytes"
            )),
            LinesCodecError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                BackendError::Protocol("the response is not UTF-8".into())
            }
            LinesCodecError::Io(e) => {
                BackendError::Unavailable(format!("reading the response: {e}"))
            }
        })
        // After an error the framing is lost: stop there.
        .scan(false, |failed, line| {
            if *failed {
                return futures::future::ready(None);
            }
            *failed = line.is_err();
            futures::future::ready(Some(line))
        })
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

    fn chunks(
        parts: &[&[u8]],
    ) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + use<> {
        let parts: Vec<_> = parts
            .iter()
            .map(|p| Ok(bytes::Bytes::copy_from_slice(p)))
            .collect();
        futures::stream::iter(parts)
    }

    #[tokio::test]
    async fn lines_split_across_chunks_and_a_last_line_without_newline() {
        let body = chunks(&[b"data: a\r\nda", "ta: é".as_bytes(), b"\n\nlast"]);
        let lines: Vec<String> = lines_of(body).map(|l| l.unwrap()).collect().await;
        assert_eq!(lines, ["data: a", "data: é", "", "last"]);
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_without_buffering_it() {
        // 8 MiB without a newline: the old reader kept all of it; now it stops at 1 MiB.
        let chunk = vec![b'x'; 64 * 1024];
        let parts: Vec<&[u8]> = std::iter::repeat_n(chunk.as_slice(), 128).collect();
        let mut lines = Box::pin(lines_of(chunks(&parts)));
        match lines.next().await {
            Some(Err(BackendError::Protocol(m))) => assert!(m.contains("longer than"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(lines.next().await.is_none());
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_a_protocol_error() {
        let mut lines = Box::pin(lines_of(chunks(&[b"ok\n\xff\xfe\n"])));
        assert_eq!(lines.next().await.unwrap().unwrap(), "ok");
        assert!(matches!(
            lines.next().await,
            Some(Err(BackendError::Protocol(_)))
        ));
    }
}
