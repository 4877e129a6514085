//! Guest stdout and stderr, turned into log events tagged with tenant and request id.
//!
//! Output is split into lines (a partial line is held until its newline, or flushed when
//! it grows past [`MAX_LINE_BYTES`] or the instance goes away). Each request may log at
//! most [`LOG_ALLOWANCE_BYTES`]; past that one warning is logged and the rest is dropped,
//! so a chatty or hostile guest cannot flood the node's log.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::scope::{LogAllowance, ScopeSlot};

/// Bytes of guest output each request may log.
pub const LOG_ALLOWANCE_BYTES: u64 = 256 * 1024;
/// A line longer than this is logged in pieces.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Which of the guest's streams.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GuestStream {
    Stdout,
    Stderr,
}

/// One of an instance's output streams.
#[derive(Clone)]
pub(crate) struct GuestLog {
    inner: Arc<GuestLogInner>,
}

struct GuestLogInner {
    stream: GuestStream,
    tenant: Arc<str>,
    scope: ScopeSlot,
    partial: Mutex<Vec<u8>>,
}

impl GuestLog {
    pub(crate) fn new(stream: GuestStream, tenant: Arc<str>, scope: ScopeSlot) -> GuestLog {
        GuestLog {
            inner: Arc::new(GuestLogInner {
                stream,
                tenant,
                scope,
                partial: Mutex::new(Vec::new()),
            }),
        }
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut partial = self.inner.partial.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            partial.extend_from_slice(&bytes[..newline]);
            self.inner.emit(&partial);
            partial.clear();
            bytes = &bytes[newline + 1..];
        }
        partial.extend_from_slice(bytes);
        if partial.len() >= MAX_LINE_BYTES {
            self.inner.emit(&partial);
            partial.clear();
        }
    }
}

impl GuestLogInner {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let scope = self.scope.get();
        let request_id = scope.as_ref().map_or("-", |s| &s.id);
        if let Some(scope) = &scope {
            match scope.take_log_allowance(line.len() + 1, LOG_ALLOWANCE_BYTES) {
                LogAllowance::Granted => {}
                LogAllowance::JustExhausted => {
                    tracing::warn!(
                        tenant = %self.tenant,
                        request_id,
                        "guest log allowance of {LOG_ALLOWANCE_BYTES} bytes per request reached; dropping further output"
                    );
                    return;
                }
                LogAllowance::Exhausted => return,
            }
        }
        match self.stream {
            GuestStream::Stdout => {
                tracing::info!(target: "guest", tenant = %self.tenant, request_id, stream = "stdout", "{line}")
            }
            GuestStream::Stderr => {
                tracing::warn!(target: "guest", tenant = %self.tenant, request_id, stream = "stderr", "{line}")
            }
        }
    }
}

impl Drop for GuestLogInner {
    fn drop(&mut self) {
        let partial = std::mem::take(self.partial.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !partial.is_empty() {
            self.emit(&partial);
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
