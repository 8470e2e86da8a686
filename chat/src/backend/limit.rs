//! A concurrency limit in front of a remote backend: at most `limit` generations run against
//! it at once, and one more is refused at once ("busy": HTTP 429 with `Retry-After`, gRPC
//! `RESOURCE_EXHAUSTED`) instead of piling up connections on an upstream that is already
//! saturated. A generation holds its permit until its stream is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Backend, BackendError, EventStream, GenerationRequest, Result, StreamEvent};

pub struct Limited<B> {
    inner: B,
    permits: Arc<Semaphore>,
    limit: usize,
}

impl<B: Backend> Limited<B> {
    /// `limit` must be at least 1.
    pub fn new(inner: B, limit: usize) -> Self {
        Limited {
            inner,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// A stream that releases its permit when dropped.
struct Permitted {
    stream: EventStream,
    _permit: OwnedSemaphorePermit,
}

impl Stream for Permitted {
    type Item = Result<StreamEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

#[async_trait::async_trait]
impl<B: Backend> Backend for Limited<B> {
    async fn generate(&self, request: GenerationRequest) -> Result<EventStream> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            BackendError::Busy(format!(
                "{} generations are already running against the {} backend",
                self.limit,
                self.inner.kind()
            ))
        })?;
        let stream = self.inner.generate(request).await?;
        Ok(Box::pin(Permitted {
            stream,
            _permit: permit,
        }))
    }

    async fn reachable(&self) -> Result<()> {
        self.inner.reachable().await
    }

    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// Answers every request with a stream that never ends.
    struct Endless;

    #[async_trait::async_trait]
    impl Backend for Endless {
        async fn generate(&self, _request: GenerationRequest) -> Result<EventStream> {
            Ok(Box::pin(futures::stream::pending()))
        }
        async fn reachable(&self) -> Result<()> {
            Ok(())
        }
        fn model_name(&self) -> &str {
            "endless"
        }
        fn kind(&self) -> &'static str {
            "openai"
        }
    }

    #[tokio::test]
    async fn a_request_beyond_the_limit_is_busy_until_a_stream_is_dropped() {
        let backend = Limited::new(Endless, 2);
        let first = backend
            .generate(GenerationRequest::default())
            .await
            .unwrap();
        let _second = backend
            .generate(GenerationRequest::default())
            .await
            .unwrap();
        let refused = backend.generate(GenerationRequest::default()).await;
        assert!(
            matches!(refused, Err(BackendError::Busy(_))),
            "{:?}",
            refused.err()
        );
        drop(first);
        let mut third = backend
            .generate(GenerationRequest::default())
            .await
            .unwrap();
        assert!(futures::poll!(third.next()).is_pending());
    }
}
