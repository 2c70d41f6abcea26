//! Request and response bodies as the server loop wraps them: a request body that must arrive
//! by a deadline, and a response body that keeps its request counted in flight until it is done.

use std::error::Error;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn Error + Send + Sync>;

/// A request body whose last byte did not arrive within `listen.body_read_timeout`.
///
/// Its source is the gRPC status a client gets (DEADLINE_EXCEEDED): tonic looks for a status
/// in a body error's source chain.
#[derive(Debug)]
pub struct BodyTimedOut {
    status: tonic::Status,
}

impl BodyTimedOut {
    fn new(timeout: Duration) -> Self {
        Self {
            status: tonic::Status::deadline_exceeded(format!(
                "the request body did not arrive within {} (listen.body_read_timeout)",
                humantime::format_duration(timeout)
            )),
        }
    }
}

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.status.message())
    }
}

impl Error for BodyTimedOut {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.status)
    }
}

/// Whether `error` (a body read's, wrapped any number of times) is a [`BodyTimedOut`]; its
/// message if so.
pub fn body_timed_out(error: &(dyn Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(timed_out) = error.downcast_ref::<BodyTimedOut>() {
            return Some(timed_out.to_string());
        }
        next = error.source();
    }
    None
}

/// A request body that fails with [`BodyTimedOut`] once `deadline` passes before its end.
pub(super) struct Deadline {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Made at the first wait only: most bodies arrive with their head.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub(super) fn new(inner: Incoming, deadline: Instant, timeout: Duration) -> Self {
        Self {
            inner,
            deadline,
            timeout,
            sleep: None,
        }
    }
}

impl Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(BodyTimedOut::new(this.timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body holding `G` (its request's place in flight) until it is done or dropped.
pub(super) struct Guarded<G> {
    inner: axum::body::Body,
    guard: Option<G>,
}

impl<G> Guarded<G> {
    pub(super) fn new(inner: axum::body::Body, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<G: Unpin> Body for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
