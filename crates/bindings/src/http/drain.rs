//! Bodies that are read to their end in the background when dropped early.
//!
//! Two sides need it. A response body the guest abandons (a fragment answered 500)
//! would otherwise leave its connection half-read: hyper notices only when the
//! connection task next runs, and until then the pool can hand the connection to the
//! guest's next request, which fails with "connection reset". And a request body hyper
//! stops reading — a `GET` without a length, whose body hyper never sends; a request
//! refused or failed before its body went out — closes the guest's output stream, so
//! the guest's next write fails with "connection reset" *instead of* the answer or the
//! real reason, which it would otherwise read from the response.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// How much of a dropped body is read, and for how long.
#[derive(Clone, Copy)]
pub(super) struct Drain {
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl Drain {
    /// An abandoned response body: enough to end a small message so its connection can
    /// be reused, no more.
    pub const RESPONSE: Drain = Drain {
        max_bytes: 64 * 1024,
        timeout: Duration::from_secs(1),
    };
    /// A request body hyper stopped reading: whatever the guest still writes is
    /// discarded until it finishes or its instance ends. The bytes cost the guest its
    /// own fuel; the timeout bounds a guest that holds the body open and never writes.
    pub const REQUEST: Drain = Drain {
        max_bytes: usize::MAX,
        timeout: Duration::from_secs(60),
    };
}

/// `body`, read to its end under `drain` if dropped before it.
pub(super) struct DrainedOnDrop<B: Body<Data = Bytes> + Send + Unpin + 'static> {
    body: Option<B>,
    drain: Drain,
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> DrainedOnDrop<B> {
    pub fn new(body: B, drain: Drain) -> Self {
        DrainedOnDrop {
            body: Some(body),
            drain,
        }
    }
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> Body for DrainedOnDrop<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.body = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint())
    }
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> Drop for DrainedOnDrop<B> {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Drain { max_bytes, timeout } = self.drain;
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0usize;
                while read <= max_bytes {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                        }
                        _ => return,
                    }
                }
            };
            let _ = tokio::time::timeout(timeout, drain).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A body fed by a channel, as wasi:http feeds a guest's writes to hyper.
    struct Channel(mpsc::Receiver<Bytes>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    fn channel() -> (mpsc::Sender<Bytes>, Channel) {
        let (tx, rx) = mpsc::channel(1);
        (tx, Channel(rx))
    }

    #[tokio::test]
    async fn a_dropped_body_still_takes_the_writers_bytes_until_they_end() {
        let (tx, body) = channel();
        drop(DrainedOnDrop::new(body, Drain::REQUEST));
        for _ in 0..3 {
            tx.send(Bytes::from_static(b"more"))
                .await
                .expect("the writer is not cut off");
        }
        // Without the drain the reader is gone at once: the same write fails.
        let (tx, body) = channel();
        drop(body);
        assert!(tx.send(Bytes::new()).await.is_err());
    }

    #[tokio::test]
    async fn draining_stops_past_its_byte_limit() {
        let (tx, body) = channel();
        let drain = Drain {
            max_bytes: 8,
            timeout: Duration::from_secs(60),
        };
        drop(DrainedOnDrop::new(body, drain));
        tx.send(Bytes::from_static(b"0123456789"))
            .await
            .expect("the first chunk is read");
        // The drain read past its limit and dropped the body: the writer sees it closed.
        tx.closed().await;
        assert!(tx.send(Bytes::new()).await.is_err());
    }
}
