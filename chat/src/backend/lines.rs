//! Splitting a remote backend's response body into lines of bounded length (an SSE field,
//! an NDJSON object): an upstream that never sends a newline cannot grow our memory.

use futures::{Stream, StreamExt, TryStreamExt};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use super::{BackendError, Result};

/// Longest line (an SSE field, an NDJSON object) read from a backend: a token's chunk is a
/// few hundred bytes, a final one with usage and logprobs a few KiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;

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
