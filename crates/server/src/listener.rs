//! Accepting connections, within [`Limits`], and the timers that drop a peer that holds a
//! connection without using it.
//!
//! Each accepted socket is wrapped in [`GuardedIo`], which owns the connection-level
//! timers, and served by hyper (HTTP/1.1, or HTTP/2 with prior knowledge):
//! - no request in flight and no byte received for `keepalive_timeout` → closed;
//! - a request head started but not complete within `header_read_timeout` → closed
//!   (slow-loris);
//! - a write blocked (the client stopped reading) for `write_idle_timeout` → closed;
//! - a request body that sends nothing for `body_idle_timeout` fails the request
//!   ([`crate::limits::IdleBody`], put on every request by [`crate::router`]).
//!
//! hyper can't tell "idle between requests" from "reading a body", so a per-connection
//! [`ConnState`] counts requests in flight: the service increments it when a request
//! starts and the response body decrements it when it ends (or is dropped).
//!
//! HTTP/2 multiplexes: a client can stop granting flow-control window on a stream while
//! the connection stays busy, and hyper then never polls that response again. So each
//! response body records when it last produced data, and an HTTP/2 connection with a
//! response that made no progress for `write_idle_timeout` is closed (all its streams with
//! it — they belong to the same client).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::limits::Limits;

/// How long shutdown waits for requests in flight before it stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serve `app` on `listener` until `shutdown` resolves, then finish the requests in flight
/// (for at most 30 s) and return.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let timers = Arc::new(Timers::from(limits));
    let shared = Arc::new(Shared {
        app,
        protocols: Protocols::new(limits),
        tls,
        handshake_timeout: limits.header_read_timeout,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut warned_at_cap = false;
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        if connections.available_permits() == 0 && !warned_at_cap {
            tracing::warn!(
                limit = limits.max_connections,
                "connection limit reached; new connections wait"
            );
            warned_at_cap = true;
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if connections.available_permits() > 0 {
            warned_at_cap = false;
        }
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        let io = GuardedIo::new(stream, state.clone(), timers.clone());
        let conn = Conn { io, state, peer, permit };
        tokio::spawn(connection(shared.clone(), conn, graceful.watcher()));
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "requests still in flight after {} s; stopping anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// What every connection is served with.
struct Shared {
    app: Router,
    protocols: Protocols,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// A TLS handshake is bounded like a request head.
    handshake_timeout: Duration,
}

/// An accepted connection, and the slot it holds under `max_connections`.
struct Conn {
    io: GuardedIo,
    state: Arc<ConnState>,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// Serve one connection until it ends: requests go to the app, their responses are tracked
/// in the connection's [`ConnState`].
async fn connection(shared: Arc<Shared>, c: Conn, watcher: Watcher) {
    let Conn { io, state, peer, permit } = c;
    let app = shared.app.clone();
    let conn = state.clone();
    let service =
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let guard = conn.request_started();
            let app = app.clone();
            let conn = conn.clone();
            async move {
                let res = app.oneshot(req.map(Body::new)).await?;
                let progress = conn.track_response();
                Ok::<_, std::convert::Infallible>(res.map(|body| {
                    Body::new(TrackedBody { inner: body, progress, conn, _guard: guard })
                }))
            }
        });
    let (io, h2) = match handshake(&shared, io).await {
        Ok(sniffed) => {
            state.h2.store(sniffed.1, Ordering::Release);
            sniffed
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "connection closed before a request");
            drop(permit);
            return;
        }
    };
    let io = TokioIo::new(io);
    let protocols = &shared.protocols;
    let result = if h2 {
        watcher.watch(protocols.h2.serve_connection(io, service)).await
    } else {
        watcher.watch(protocols.h1.serve_connection(io, service)).await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    drop(permit);
}

/// Which protocol: over TLS, what ALPN agreed on; in the clear, HTTP/2 clients open with its
/// preface (prior knowledge, h2c). A peer that sends nothing is dropped by GuardedIo's
/// keep-alive timer; a handshake is bounded like a head.
async fn handshake(shared: &Shared, io: GuardedIo) -> io::Result<(Box<dyn Io>, bool)> {
    match &shared.tls {
        Some(acceptor) => {
            match tokio::time::timeout(shared.handshake_timeout, acceptor.accept(io)).await {
                Ok(Ok(stream)) => {
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    Ok((Box::new(stream), h2))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            }
        }
        None => sniff(io).await.map(|(io, h2)| (Box::new(io) as Box<dyn Io>, h2)),
    }
}

/// A connection's byte stream, in the clear or inside TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// hyper's HTTP/1.1 and HTTP/2 servers, configured from the [`Limits`].
struct Protocols {
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &Limits) -> Self {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            // The head timeout is GuardedIo's: hyper's would also count the idle time
            // before the first byte, which is the keep-alive timeout's job.
            .header_read_timeout(None)
            .max_header_size(limits.max_header_bytes.max(1024))
            .keep_alive(true);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            // What one stalled stream may have queued.
            .max_send_buf_size(64 << 10)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Protocols { h1, h2 }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Read the first bytes of a connection to tell HTTP/2 (its preface) from HTTP/1.1; the
/// connection with those bytes put back in front.
async fn sniff(mut io: GuardedIo) -> io::Result<(Prefixed<GuardedIo>, bool)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    while buf.len() < H2_PREFACE.len() {
        let mut byte = [0u8; 24];
        let want = H2_PREFACE.len() - buf.len();
        let n = io.read(&mut byte[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
        if !H2_PREFACE.starts_with(&buf) {
            break;
        }
    }
    let h2 = buf == H2_PREFACE;
    Ok((Prefixed { prefix: buf, at: 0, inner: io }, h2))
}

/// A stream with bytes already read from it put back in front.
struct Prefixed<T> {
    prefix: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connection-level timeouts.
#[derive(Debug)]
struct Timers {
    header_read: Duration,
    keepalive: Duration,
    write_idle: Duration,
}

impl From<&Limits> for Timers {
    fn from(l: &Limits) -> Self {
        Timers {
            header_read: l.header_read_timeout,
            keepalive: l.keepalive_timeout,
            write_idle: l.write_idle_timeout,
        }
    }
}

/// What the service tells the socket wrapper about one connection.
struct ConnState {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Requests started so far: tells a request head in progress from a finished one.
    started: AtomicU64,
    /// When the connection last had nothing in flight, in ms since `opened`.
    idle_since_ms: AtomicU64,
    /// Speaks HTTP/2.
    h2: AtomicBool,
    /// When each response being sent last produced data, in ms since `opened`.
    responses: std::sync::Mutex<Vec<Weak<AtomicU64>>>,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            responses: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A response about to be sent: its progress clock, starting now.
    fn track_response(&self) -> Arc<AtomicU64> {
        let clock = Arc::new(AtomicU64::new(self.now_ms()));
        let mut responses = self.responses.lock().unwrap_or_else(PoisonError::into_inner);
        responses.retain(|w| w.strong_count() > 0);
        responses.push(Arc::downgrade(&clock));
        clock
    }

    /// When the response that went longest without progress last made some.
    fn stalest_response(&self) -> Option<Instant> {
        let responses = self.responses.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest =
            responses.iter().filter_map(Weak::upgrade).map(|c| c.load(Ordering::Acquire)).min()?;
        Some(self.opened + Duration::from_millis(oldest))
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn idle_since(&self) -> Instant {
        self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }
}

/// One request in flight; the connection is idle again when the last one is dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.0.opened.elapsed().as_millis();
        self.0.idle_since_ms.store(u64::try_from(elapsed).unwrap_or(u64::MAX), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done, and
/// records when it last produced data.
struct TrackedBody {
    inner: Body,
    progress: Arc<AtomicU64>,
    conn: Arc<ConnState>,
    _guard: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if frame.is_ready() {
            self.progress.store(self.conn.now_ms(), Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket with the connection-level timers (see the module documentation).
struct GuardedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    timers: Arc<Timers>,
    /// `(requests started then, when)` of the first byte of a request head in progress.
    head: Option<(u64, Instant)>,
    read_timer: Option<Pin<Box<Sleep>>>,
    /// Since when writes have been blocked.
    write_blocked: Option<Instant>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl GuardedIo {
    fn new(inner: TcpStream, state: Arc<ConnState>, timers: Arc<Timers>) -> Self {
        GuardedIo {
            inner,
            state,
            timers,
            head: None,
            read_timer: None,
            write_blocked: None,
            write_timer: None,
        }
    }

    /// When an idle, half-received or (HTTP/2) stalled connection must be given up, if it
    /// must.
    fn read_deadline(&self) -> Option<Instant> {
        let h2 = self.state.h2.load(Ordering::Acquire);
        if self.state.in_flight.load(Ordering::Acquire) > 0 {
            // A body is being read or a response written. HTTP/1.1: the body and write
            // timers apply. HTTP/2: also a response whose stream stopped moving.
            return if h2 {
                self.state.stalest_response()?.checked_add(self.timers.write_idle)
            } else {
                None
            };
        }
        let started = self.state.started.load(Ordering::Acquire);
        match self.head {
            // (HTTP/2 control frames between requests are not a request head.)
            Some((epoch, first_byte)) if epoch == started && !h2 => {
                first_byte.checked_add(self.timers.header_read)
            }
            _ => self.state.idle_since().checked_add(self.timers.keepalive),
        }
    }

    /// Poll `timer` set to `deadline`; `true` once it has passed.
    fn expired(
        timer: &mut Option<Pin<Box<Sleep>>>,
        deadline: Instant,
        cx: &mut Context<'_>,
    ) -> bool {
        match timer {
            Some(t) => {
                if t.deadline() != deadline {
                    t.as_mut().reset(deadline);
                }
            }
            None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        timer.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }

    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => {
                let since = *self.write_blocked.get_or_insert_with(Instant::now);
                let Some(deadline) = since.checked_add(self.timers.write_idle) else {
                    return Poll::Pending;
                };
                if Self::expired(&mut self.write_timer, deadline, cx) {
                    tracing::debug!("closing a connection whose client stopped reading");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.write_blocked = None;
                ready
            }
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && self.state.in_flight.load(Ordering::Acquire) == 0
                {
                    let started = self.state.started.load(Ordering::Acquire);
                    if !matches!(self.head, Some((epoch, _)) if epoch == started) {
                        self.head = Some((started, Instant::now()));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some(deadline) = self.read_deadline() else {
                    return Poll::Pending;
                };
                let this = &mut *self;
                if Self::expired(&mut this.read_timer, deadline, cx) {
                    tracing::debug!("closing an idle or slow connection");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request in time",
                    )));
                }
                Poll::Pending
            }
            err => err,
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
        Poll::Ready(r)
    }
}

/// A listener on `addr` with a backlog that absorbs bursts of connections.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // The kernel caps it at net.core.somaxconn.
    socket.listen(4096)
}
