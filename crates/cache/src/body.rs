//! Reading a response body into the cache: whole when it fits in the largest object,
//! else what was read and the rest, so the caller can pass it on uncached.

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};

/// A body read up to a bound.
pub enum Read<B> {
    /// All of it, within the bound.
    Whole(Bytes),
    /// More than the bound: the bytes read so far and the unread rest.
    Over { head: Bytes, rest: B },
}

/// Reads `body` until its end or past `max` bytes. Trailers are dropped.
pub async fn read_up_to<B>(mut body: B, max: u64) -> Result<Read<B>, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read.extend_from_slice(&data);
        }
        if read.len() as u64 > max {
            return Ok(Read::Over {
                head: read.freeze(),
                rest: body,
            });
        }
    }
    Ok(Read::Whole(read.freeze()))
}

/// `head` followed by the rest of `rest`, as one body.
pub fn chained<B>(head: Bytes, rest: B) -> UnsyncBoxBody<Bytes, B::Error>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Send + 'static,
{
    let first = futures::stream::once(async move { Ok(Frame::data(head)) });
    let rest = futures::stream::unfold(rest, |mut rest| async move {
        let frame = rest.frame().await?;
        Some((frame, rest))
    });
    StreamBody::new(futures::StreamExt::chain(first, rest)).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn a_body_over_the_bound_comes_back_whole_when_chained() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        let Read::Over { head, rest } = read_up_to(body, 4).await.expect("read") else {
            panic!("over the bound")
        };
        let all = chained(head, rest)
            .collect()
            .await
            .expect("read")
            .to_bytes();
        assert_eq!(all, "0123456789");
        let body = Full::new(Bytes::from_static(b"0123"));
        assert!(matches!(read_up_to(body, 4).await, Ok(Read::Whole(b)) if b == "0123"));
    }
}
