//! The daemon's HTTP server loop, one for all four listeners (OTLP/gRPC, OTLP/HTTP, metrics,
//! API): what a hostile or broken client can hold is bounded here, before any handler runs.
//!
//! - At most `listen.max_connections` open connections per listener: past it the loop stops
//!   accepting, so new connections wait in the kernel's accept queue while the open ones are
//!   served (nginx's `worker_connections` does the same).
//! - Each connection has a watchdog ([`connection`]): an HTTP/1 request head that does not arrive
//!   within `header_read_timeout` of its first byte closes the connection (slowloris); no request
//!   in flight for `idle_timeout` asks it to go away; `max_connection_age` does the same, with
//!   `max_connection_age_grace` before it is closed whatever is in flight.
//! - Each request's body must arrive within `body_read_timeout` ([`body`]): a slow body is
//!   answered 408 / DEADLINE_EXCEEDED.
//! - HTTP/2: concurrent streams, header list size, rapid-reset and error-reset budgets, keepalive
//!   PINGs (hyper's and h2's own limits, set from `listen.*`).
//!
//! axum's `serve` offers none of these and tonic's `Server` only some, so both are replaced by
//! this loop, modelled on tonic's (`hyper_util`'s automatic HTTP/1 / HTTP/2 connection builder,
//! graceful shutdown that lets requests in flight finish). gRPC is served as tonic `Routes`
//! turned into an axum router.

mod body;
mod connection;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use body::{BodyTimedOut, body_timed_out};

use crate::config::Connections;

/// Serves `app` on `listener` under `limits` until `stop` resolves, then lets the requests in
/// flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Connections,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let builder = Arc::new(builder(&limits));
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut stop = pin!(stop);
    loop {
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error, local).await;
                    continue;
                }
            },
        };
        // Acknowledgements are latency-sensitive: without TCP_NODELAY, Nagle's algorithm holds
        // a response's last segment until the client's delayed ACK (~40 ms).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY");
        }
        let served = connection::Served {
            app: app.clone(),
            limits: limits.clone(),
            local,
            peer,
        };
        tokio::spawn(connection::run(
            builder.clone(),
            served,
            tcp,
            closed.clone(),
            permit,
        ));
    }
    // Stop accepting (the kernel refuses new connections), then let each connection finish
    // what it has in flight.
    drop(listener);
    let _ = closing.send(true);
    drop(closed);
    closing.closed().await;
    Ok(())
}

/// Connection errors on accept are the peer's business; others (EMFILE, ENFILE, ENOBUFS) are
/// the host's: logged, and accepting pauses briefly rather than spinning, as hyper's examples
/// and axum do.
async fn accept_failed(error: &std::io::Error, local: SocketAddr) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(listener = %local, error = %error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// hyper's HTTP/1 and HTTP/2 settings from `listen.*`.
fn builder(limits: &Connections) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog times request heads (hyper's own timer would also run while a keep-alive
        // connection waits for its next request, and close it then).
        .header_read_timeout(None);
    // hyper's read buffer (~400 KiB) bounds what a head can hold in memory; `max_header_size` is
    // checked on the parsed head (`connection::PerRequest`). Shrinking the buffer to the limit
    // would also shrink body reads: 10 % fewer 233 KB requests per CPU-second.
    builder
        .http2()
        .timer(TokioTimer::new())
        // Flow-control windows sized for OTLP batches (hundreds of KB): with the 64 KiB
        // defaults a large export stalls on window updates.
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_size)
        .max_pending_accept_reset_streams(limits.http2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.http2_max_local_error_reset_streams)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    builder
}
