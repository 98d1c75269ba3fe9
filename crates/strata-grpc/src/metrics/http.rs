//! The metrics endpoint: `GET /metrics` over HTTP/1.1, served by hyper.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::registry::Metrics;
use super::scrape::render;
use super::text;
use crate::backends::Backends;

/// How long a client may take to send a request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head read (hyper's smallest allowed buffer): a scrape needs a few hundred
/// bytes.
const MAX_REQUEST_HEAD: usize = 8192;

/// How long scrapes in flight may take to finish once `shutdown` resolves.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, then lets the scrapes in
/// flight finish (for a few seconds at most). `/` names the endpoint; other paths are 404 and
/// other methods than GET and HEAD 405.
///
/// Every connection is owned by the returned future: dropping it (aborting its task) ends
/// them all at once.
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    backends: Arc<Backends>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections as they end, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: back off rather than spin.
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (metrics, backends) = (Arc::clone(&metrics), Arc::clone(&backends));
        let service =
            service_fn(move |request| answer(request, Arc::clone(&metrics), Arc::clone(&backends)));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics: connection failed");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics: scrapes still running at shutdown were cut off");
    }
}

/// Answers one request.
async fn answer(
    request: Request<Incoming>,
    metrics: Arc<Metrics>,
    backends: Arc<Backends>,
) -> Result<Response<String>, Infallible> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            match tokio::task::spawn_blocking(move || render(&metrics, &backends)).await {
                Ok(text) => (StatusCode::OK, text),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("rendering the metrics failed: {e}\n"),
                ),
            }
        }
        (&Method::GET | &Method::HEAD, "/") => {
            (StatusCode::OK, "Strata metrics: /metrics\n".to_owned())
        }
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "not found; try /metrics\n".to_owned(),
        ),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(text::CONTENT_TYPE));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    Ok(response)
}
