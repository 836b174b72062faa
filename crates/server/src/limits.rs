//! What one client may hold: connections, transfers in flight, and memory for bodies that
//! are read or served whole. Every limit answers at once — `429 TOOMANYREQUESTS` with
//! `Retry-After` — instead of queueing requests without end.
//!
//! - Transfers ([`Admission::download`], [`Admission::upload`]): a permit per blob or
//!   manifest body in flight, held as long as the body is (the permit rides along with the
//!   response stream and is released when the body ends or the client goes away).
//! - Body memory ([`Admission::reserve`]): manifests and management bodies are held whole
//!   (≤ 4 MiB each); their bytes are reserved from one server-wide budget as they arrive,
//!   so a thousand slow 4 MiB bodies can't add up to gigabytes.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits that keep one client from taking what others need. The defaults are what a
/// registry exposed to the internet would use; every one is a `[limits]` key of the
/// configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most (further ones wait in the listen backlog). Lowered at start
    /// to what the open-file limit allows.
    pub max_connections: usize,
    /// From a request's first byte to the end of its headers.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub keepalive_timeout: Duration,
    /// How long a request body may send nothing before the request is abandoned.
    pub body_idle_timeout: Duration,
    /// How long a response may stay blocked on a client that doesn't read before the
    /// connection is closed.
    pub write_idle_timeout: Duration,
    /// The largest request head (HTTP/1.1) or header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Blob and manifest downloads in flight.
    pub max_downloads: usize,
    /// Blob uploads and manifest pushes in flight.
    pub max_uploads: usize,
    /// Bytes held by bodies kept whole in memory (manifests, management requests), across
    /// all requests.
    pub body_memory: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Memory for large chunks of blob downloads, server-wide; beyond it downloads go on in
    /// small chunks (so a client that stops reading pins little either way).
    pub download_buffers: usize,
    /// Memory for large write batches of uploads, server-wide; beyond it uploads are written
    /// in small batches.
    pub upload_buffers: usize,
    /// Downloads and uploads in flight from one client address.
    pub max_transfers_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            header_read_timeout: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            write_idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
            max_downloads: 2048,
            max_uploads: 512,
            body_memory: 256 << 20,
            http2_max_streams: 100,
            download_buffers: 32 << 20,
            upload_buffers: 64 << 20,
            max_transfers_per_client: 256,
        }
    }
}

/// The shared counters behind [`Limits`]' caps on work in flight.
#[derive(Clone, Debug)]
pub struct Admission {
    downloads: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    memory_total: usize,
    clients: Arc<Clients>,
}

/// Transfers in flight per client address.
#[derive(Debug)]
struct Clients {
    max: usize,
    count: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One transfer counted against its client's address.
#[derive(Debug)]
struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut count =
            self.clients.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = count.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                count.remove(&self.ip);
            }
        }
    }
}

impl Clients {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut count = self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = count.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { clients: self.clone(), ip })
    }
}

/// Held while a transfer (or reserved memory) is in use; released on drop.
#[derive(Debug, Default)]
pub struct Permit {
    _slots: Vec<OwnedSemaphorePermit>,
    _client: Option<ClientSlot>,
}

impl Permit {
    fn merge(&mut self, other: Permit) {
        self._slots.extend(other._slots);
    }
}

impl FromIterator<Permit> for Permit {
    fn from_iter<I: IntoIterator<Item = Permit>>(iter: I) -> Self {
        let mut out = Permit::default();
        for p in iter {
            out._slots.extend(p._slots);
            if p._client.is_some() {
                out._client = p._client;
            }
        }
        out
    }
}

/// Why a transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server-wide cap is reached.
    Server,
    /// This client address has too many transfers in flight.
    Client,
}

/// Memory is counted in KiB so that the semaphore's `u32` acquire amounts suffice.
const UNIT: usize = 1024;

impl Admission {
    pub fn new(limits: &Limits) -> Admission {
        let units = (limits.body_memory / UNIT).max(1);
        Admission {
            downloads: Arc::new(Semaphore::new(limits.max_downloads.max(1))),
            uploads: Arc::new(Semaphore::new(limits.max_uploads.max(1))),
            memory: Arc::new(Semaphore::new(units)),
            memory_total: units,
            clients: Arc::new(Clients {
                max: limits.max_transfers_per_client.max(1),
                count: Default::default(),
            }),
        }
    }

    /// A download slot for a client (its address, when known).
    pub fn download(&self, client: Option<IpAddr>) -> Result<Permit, Refusal> {
        self.slot(&self.downloads, client)
    }

    /// An upload slot for a client (its address, when known).
    pub fn upload(&self, client: Option<IpAddr>) -> Result<Permit, Refusal> {
        self.slot(&self.uploads, client)
    }

    fn slot(&self, pool: &Arc<Semaphore>, client: Option<IpAddr>) -> Result<Permit, Refusal> {
        let client = match client {
            Some(ip) => Some(self.clients.take(ip).ok_or(Refusal::Client)?),
            None => None,
        };
        let slot = pool.clone().try_acquire_owned().map_err(|_| Refusal::Server)?;
        Ok(Permit { _slots: vec![slot], _client: client })
    }

    /// Reserve `bytes` of body memory, or `None` when the budget can't hold them now.
    pub fn reserve(&self, bytes: usize) -> Option<Permit> {
        let units = bytes.div_ceil(UNIT).max(1);
        if units > self.memory_total {
            return None;
        }
        let units = u32::try_from(units).ok()?;
        let slot = self.memory.clone().try_acquire_many_owned(units).ok()?;
        Some(Permit { _slots: vec![slot], _client: None })
    }

    /// Read a body whole, reserving memory as it arrives: at most `limit` bytes (else
    /// [`ReadError::TooLarge`], after draining up to `drain` bytes so that the client gets
    /// the answer rather than a reset), and only while the budget lasts.
    pub async fn read_whole<S, E>(
        &self,
        mut body: S,
        limit: usize,
        drain: usize,
    ) -> Result<(Bytes, Permit), ReadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures::StreamExt;
        let mut buf = Vec::new();
        let mut held = Permit::default();
        let mut reserved = 0usize;
        let mut seen = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ReadError::Incomplete(e.to_string()))?;
            seen = seen.saturating_add(chunk.len());
            if seen > limit {
                if seen > drain {
                    break;
                }
                continue;
            }
            // Reserve in steps of 64 KiB rather than per network chunk.
            if seen > reserved {
                let step = (seen - reserved).max(64 << 10).min(limit.saturating_sub(reserved));
                held.merge(self.reserve(step).ok_or(ReadError::Busy)?);
                reserved += step;
            }
            buf.extend_from_slice(&chunk);
        }
        if seen > limit {
            return Err(ReadError::TooLarge);
        }
        Ok((Bytes::from(buf), held))
    }
}

/// Why [`Admission::read_whole`] gave up.
#[derive(Debug)]
pub enum ReadError {
    /// The body broke off.
    Incomplete(String),
    /// Larger than the limit.
    TooLarge,
    /// The server-wide body memory is in use.
    Busy,
}

/// A stream that keeps a [`Permit`] until it ends or is dropped.
pub struct WithPermit<S> {
    inner: S,
    permit: Option<Permit>,
}

impl<S> WithPermit<S> {
    pub fn new(inner: S, permit: Permit) -> Self {
        WithPermit { inner, permit: Some(permit) }
    }
}

impl<S: Stream + Unpin> Stream for WithPermit<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = next {
            self.permit = None;
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Admission {
        Admission::new(&Limits {
            max_downloads: 2,
            max_uploads: 1,
            body_memory: 256 << 10,
            ..Limits::default()
        })
    }

    #[test]
    fn slots_are_capped_and_come_back() {
        let a = small();
        let (d1, d2) = (a.download(None), a.download(None));
        assert!(d1.is_ok() && d2.is_ok());
        assert_eq!(a.download(None).unwrap_err(), Refusal::Server, "refused, not queued");
        assert!(a.upload(None).is_ok(), "uploads have their own slots");
        drop(d1);
        assert!(a.download(None).is_ok());
    }

    #[test]
    fn one_client_address_gets_its_share_only() {
        let a = Admission::new(&Limits { max_transfers_per_client: 2, ..Limits::default() });
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held = [a.download(Some(x)).unwrap(), a.upload(Some(x)).unwrap()];
        assert_eq!(a.download(Some(x)).unwrap_err(), Refusal::Client);
        assert!(a.download(Some(y)).is_ok(), "another client is not affected");
        drop(held);
        assert!(a.upload(Some(x)).is_ok());
    }

    #[tokio::test]
    async fn whole_bodies_are_bounded_by_the_limit_and_the_budget() {
        let a = small();
        let body = |n: usize| {
            futures::stream::iter(
                std::iter::repeat_n(Bytes::from(vec![7u8; 16 << 10]), n).map(Ok::<_, String>),
            )
        };
        let (bytes, permit) = a.read_whole(body(8), 1 << 20, 1 << 20).await.unwrap();
        assert_eq!(bytes.len(), 128 << 10);
        assert!(matches!(a.read_whole(body(2), 16 << 10, 1 << 20).await, Err(ReadError::TooLarge)));
        // 128 KiB (rounded up to a 64 KiB step) are held by the first body; 256 KiB more
        // don't fit in a 256 KiB budget.
        assert!(matches!(a.read_whole(body(16), 1 << 20, 1 << 20).await, Err(ReadError::Busy)));
        drop(permit);
        assert!(a.read_whole(body(16), 1 << 20, 1 << 20).await.is_ok());
    }

    #[tokio::test]
    async fn a_stream_releases_its_permit_at_the_end() {
        use futures::StreamExt;
        let a = small();
        let permit = a.download(None).unwrap();
        let _other = a.download(None).unwrap();
        let mut s = WithPermit::new(futures::stream::iter(vec![1, 2]), permit);
        assert!(a.download(None).is_err());
        while s.next().await.is_some() {}
        assert!(a.download(None).is_ok(), "released when the stream ended, before the drop");
    }
}

/// A request body that fails when it sends nothing for `timeout`. One timer per body,
/// moved only when it fires early (a frame merely records its time), so fast uploads pay
/// nothing per chunk.
pub(crate) struct IdleBody<B> {
    inner: B,
    timeout: std::time::Duration,
    last: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleBody<B> {
    pub(crate) fn new(inner: B, timeout: std::time::Duration) -> Self {
        IdleBody { inner, timeout, last: tokio::time::Instant::now(), timer: None }
    }
}

/// The error a stalled body ends with.
#[derive(Debug)]
pub(crate) struct BodyIdle(std::time::Duration);

impl std::fmt::Display for BodyIdle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body sent nothing for {} s", self.0.as_secs())
    }
}

impl std::error::Error for BodyIdle {}

impl<B> http_body::Body for IdleBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.last = tokio::time::Instant::now();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.last + this.timeout;
                let timer =
                    this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                loop {
                    if timer.deadline() < deadline {
                        timer.as_mut().reset(deadline);
                    }
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Poll::Ready(Some(Err(Box::new(BodyIdle(this.timeout)))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
