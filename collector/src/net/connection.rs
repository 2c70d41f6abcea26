//! One connection: its service (peer address in every request, the body deadline, requests in
//! flight counted) and its watchdog.
//!
//! The watchdog reads the connection's [`Activity`] at each deadline it computes, so an idle
//! connection costs one timer, not one wake-up per second:
//!
//! - no request in flight and an HTTP/1 head started (a first byte read, or the connection
//!   just opened) more than `header_read_timeout` ago: closed at once (slowloris);
//! - no request in flight for `idle_timeout`: asked to go away (HTTP/1 closes at once, HTTP/2
//!   sends GOAWAY and closes when its streams are done). HTTP/2 PINGs do not count as activity,
//!   as grpc-go's `MaxConnectionIdle` does not count them;
//! - older than `max_connection_age`: asked to go away;
//! - asked to go away and still open `max_connection_age_grace` later: closed.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tower_service::Service as _;

use super::body::{Deadline, Guarded};
use crate::config::Connections;

/// What every connection of a listener serves, and under which limits.
pub(super) struct Served {
    pub app: axum::Router,
    pub limits: Arc<Connections>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// Serves one connection until it ends, its watchdog closes it, or the listener shuts down
/// (then requests in flight finish first). `_permit` is its place under `max_connections`.
pub(super) async fn run(
    builder: Arc<auto::Builder<TokioExecutor>>,
    served: Served,
    tcp: TcpStream,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let limits = served.limits.clone();
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: activity.clone(),
    });
    let service = service(served, activity.clone());
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut watchdog = Watchdog {
        activity: activity.clone(),
        going_away_until: None,
    };
    let mut check = pin!(tokio::time::sleep_until(Instant::now()));
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            () = &mut check => match watchdog.verdict(&limits, Instant::now()) {
                Verdict::Wait(until) => check.as_mut().reset(until),
                Verdict::GoAway(until) => {
                    conn.as_mut().graceful_shutdown();
                    check.as_mut().reset(until);
                }
                Verdict::Close => return,
            },
            _ = closing.wait_for(|c| *c), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The per-request service: the peer's address as axum's `ConnectInfo` and tonic's
/// `TcpConnectInfo`, the body under its deadline, the request counted in flight until its
/// response body is done (or dropped).
#[derive(Clone)]
struct PerRequest {
    app: axum::Router,
    activity: Arc<Activity>,
    local: SocketAddr,
    peer: SocketAddr,
    body_timeout: std::time::Duration,
    max_header_size: usize,
}

/// The bytes of a request's head: its request line and headers, as HTTP/1 sends them.
fn head_size<B>(request: &http::Request<B>) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + 11;
    let headers = request.headers().iter();
    line + headers
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

/// 431, closing the connection.
fn too_large_head(max: usize) -> http::Response<axum::body::Body> {
    let message = format!("the request head exceeds {max} bytes (listen.max_header_size)\n");
    let mut response = http::Response::new(axum::body::Body::from(message));
    *response.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

fn service(served: Served, activity: Arc<Activity>) -> PerRequest {
    PerRequest {
        body_timeout: served.limits.body_read_timeout,
        max_header_size: served.limits.max_header_size as usize,
        app: served.app,
        activity,
        local: served.local,
        peer: served.peer,
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for PerRequest {
    type Response = http::Response<Guarded<InFlight>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(self.activity.clone());
        if head_size(&request) > self.max_header_size {
            let response = too_large_head(self.max_header_size);
            return Box::pin(async move { Ok(response.map(|body| Guarded::new(body, guard))) });
        }
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(self.peer));
        extensions.insert(tonic::transport::server::TcpConnectInfo {
            local_addr: Some(self.local),
            remote_addr: Some(self.peer),
        });
        let deadline = Instant::now() + self.body_timeout;
        let request = request
            .map(|body| axum::body::Body::new(Deadline::new(body, deadline, self.body_timeout)));
        let mut app = self.app.clone();
        Box::pin(async move {
            let response = app.call(request).await?;
            Ok(response.map(|body| Guarded::new(body, guard)))
        })
    }
}

/// A request in flight on its connection, from its head until its response body is done.
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.head_started.store(NONE, Ordering::SeqCst);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.since_opened(Instant::now());
        self.0.last_done.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// No time: as a millisecond offset.
const NONE: u64 = u64::MAX;

/// What the watchdog reads: requests in flight and when things last happened, in milliseconds
/// since the connection opened.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last request finished (0: none yet, the connection's opening).
    last_done: AtomicU64,
    /// When the HTTP/1 request head being read started, or [`NONE`].
    head_started: AtomicU64,
    /// Whether the first bytes were read (and the protocol known).
    sniffed: AtomicBool,
    http2: AtomicBool,
}

/// What the watchdog does next.
enum Verdict {
    Wait(Instant),
    /// Ask the connection to go away; close it at the instant if it is still open.
    GoAway(Instant),
    Close,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
            // The first request's head is timed from the connection's opening, as Go's
            // `ReadHeaderTimeout` and hyper's `header_read_timeout` time it.
            head_started: AtomicU64::new(0),
            sniffed: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        }
    }

    fn since_opened(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.opened).as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + std::time::Duration::from_millis(ms)
    }

    /// Bytes arrived: the first ones tell HTTP/2 (its preface) from HTTP/1; on HTTP/1, bytes
    /// with no request in flight start a request head.
    fn read(&self, bytes: &[u8]) {
        // A load, not a swap, on every read after the first: this runs for every read.
        if !self.sniffed.load(Ordering::Relaxed) {
            self.sniffed.store(true, Ordering::Relaxed);
            if bytes.starts_with(b"PRI ") {
                self.http2.store(true, Ordering::Relaxed);
                self.head_started.store(NONE, Ordering::SeqCst);
                return;
            }
        }
        if self.http2.load(Ordering::Relaxed) || self.in_flight.load(Ordering::SeqCst) > 0 {
            return;
        }
        if self.head_started.load(Ordering::SeqCst) == NONE {
            let now = self.since_opened(Instant::now());
            self.head_started.store(now, Ordering::SeqCst);
        }
    }
}

/// The watchdog's decisions for one connection (see the module's documentation).
struct Watchdog {
    activity: Arc<Activity>,
    going_away_until: Option<Instant>,
}

impl Watchdog {
    fn verdict(&mut self, limits: &Connections, now: Instant) -> Verdict {
        if let Some(until) = self.going_away_until {
            return if now >= until {
                Verdict::Close
            } else {
                Verdict::Wait(until)
            };
        }
        let a = &self.activity;
        let mut next = now + limits.idle_timeout;
        if let Some(age) = limits.max_connection_age {
            let at = a.opened + age;
            if now >= at {
                return self.go_away(limits, now);
            }
            next = next.min(at);
        }
        if a.in_flight.load(Ordering::SeqCst) == 0 {
            let head = a.head_started.load(Ordering::SeqCst);
            if head != NONE {
                let at = a.at(head) + limits.header_read_timeout;
                if now >= at {
                    return Verdict::Close;
                }
                next = next.min(at);
            } else {
                let at = a.at(a.last_done.load(Ordering::SeqCst)) + limits.idle_timeout;
                if now >= at {
                    return self.go_away(limits, now);
                }
                next = next.min(at);
            }
        }
        Verdict::Wait(next)
    }

    fn go_away(&mut self, limits: &Connections, now: Instant) -> Verdict {
        let until = now + limits.max_connection_age_grace;
        self.going_away_until = Some(until);
        Verdict::GoAway(until)
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.activity.read(read);
            }
        }
        polled
    }
}

impl AsyncWrite for Tracked {
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
