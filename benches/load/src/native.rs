//! The floor: a plain hyper server answering the hello body, no wasm at all. Paths under
//! `/10k` get 10 KiB instead (the edge scenario's origin for distinct cached keys).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body: Bytes = if req.uri().path().starts_with("/10k") {
                        Bytes::from(vec![b'x'; 10 * 1024])
                    } else {
                        Bytes::from_static(b"hello from outpost")
                    };
                    let mut response = Response::new(Full::new(body));
                    response.headers_mut().insert(
                        "content-type",
                        "text/plain; charset=utf-8".parse().expect("valid header"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
