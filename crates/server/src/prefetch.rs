//! The start of a request body is read before a guest is admitted: a client that sends
//! its body slowly (`slowhttptest -B`) waits on the node, not in one of the tenant's
//! concurrency slots, and is answered 408 when `body_timeout` passes. A small body
//! arrives whole before its guest starts; a larger one streams on after its first
//! `body_prefetch` bytes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use outpost_runtime::{BodyError, WasiBody};

/// How much of a body is read before its guest starts, and how long the client has.
#[derive(Debug, Clone, Copy)]
pub struct BodyPrefetch {
    /// 0 turns prefetching off.
    pub bytes: u64,
    pub timeout: Duration,
}

/// The client did not send the start of its body within `timeout`.
#[derive(Debug)]
pub struct TooSlow;

/// Reads `request`'s body until it ends, `at_most` bytes have come, or `within` passes
/// (then [`TooSlow`]); answers the request with a body that replays what was read and
/// then streams the rest.
pub async fn prefetch(
    request: Request<WasiBody>,
    at_most: u64,
    within: Duration,
) -> Result<Request<WasiBody>, TooSlow> {
    let (parts, mut body) = request.into_parts();
    if at_most == 0 || body.is_end_stream() {
        return Ok(Request::from_parts(parts, body));
    }
    let mut frames = VecDeque::new();
    let mut read = 0u64;
    let ended = tokio::time::timeout(within, async {
        while read < at_most {
            match body.frame().await {
                None => return true,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += data.len() as u64;
                    }
                    frames.push_back(Ok(frame));
                }
                // The guest reads the error where it happened, after what came before.
                Some(Err(error)) => {
                    frames.push_back(Err(error));
                    return true;
                }
            }
        }
        false
    })
    .await
    .map_err(|_| TooSlow)?;
    let rest = (!ended).then_some(body);
    let replay = Replay { frames, rest };
    Ok(Request::from_parts(parts, replay.boxed_unsync()))
}

/// What was read ahead, then whatever the client still sends.
struct Replay {
    frames: VecDeque<Result<Frame<Bytes>, BodyError>>,
    rest: Option<WasiBody>,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(frame));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(|frame| frame.as_ref().ok()?.data_ref())
            .map(|data| data.len() as u64)
            .sum();
        let mut hint = self
            .rest
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint);
        hint.set_lower(hint.lower() + buffered);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn request(body: WasiBody) -> Request<WasiBody> {
        Request::new(body)
    }

    #[tokio::test]
    async fn a_small_body_arrives_whole_and_reads_the_same() {
        let body = Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let read = prefetch(request(body), 64, Duration::from_secs(1))
            .await
            .expect("in time");
        let bytes = read.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn a_larger_body_replays_its_start_then_streams_the_rest() {
        let chunks = ["ab", "cd", "ef", "gh"]
            .map(|c| Ok::<_, BodyError>(Frame::data(Bytes::from_static(c.as_bytes()))));
        let body = StreamBody::new(futures::stream::iter(chunks)).boxed_unsync();
        let read = prefetch(request(body), 3, Duration::from_secs(1))
            .await
            .expect("in time");
        let bytes = read.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"abcdefgh");
    }

    #[tokio::test]
    async fn a_body_that_does_not_come_is_too_slow() {
        let body = StreamBody::new(futures::stream::pending::<Result<Frame<Bytes>, BodyError>>())
            .boxed_unsync();
        let read = prefetch(request(body), 64, Duration::from_millis(20)).await;
        assert!(read.is_err());
    }
}
