//! The metrics endpoint: a minimal HTTP/1.1 responder on tokio, enough for Prometheus and
//! curl. `GET /metrics` answers the exposition text (`text::CONTENT_TYPE`), `HEAD
//! /metrics` the same head without the body; another path answers 404, another method on
//! `/metrics` 405. Every answer closes the connection (`Connection: close`; no keep-alive,
//! no request body is read). Lines of the request head may end in CRLF or a bare LF.
//!
//! Bounded: a request head of at most [`HEAD_BYTES_MAX`] (a longer one gets 431 and the
//! connection closes), [`READ_TIMEOUT`] to send it, [`WRITE_TIMEOUT`] to take the answer,
//! [`SCRAPES_MAX`] connections served at once (more are closed on accept), and the core's
//! snapshot awaited at most [`CORE_TIMEOUT`] (then 503). Scrapes within [`SCRAPE_REUSE`]
//! of the last rendered one get its text again ([`ScrapeCache`]): a client scraping in a
//! loop costs the node at most one snapshot and one rendering per window, whatever its rate.

use super::text::CONTENT_TYPE;
use crate::runtime::NodeHandle;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest request head (request line and headers) read.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time for a client to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a client to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrape connections served at once.
pub const SCRAPES_MAX: usize = 8;
/// How long a scrape waits for the core's snapshot.
pub const CORE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a rendered text is served again to the scrapes that follow it.
pub const SCRAPE_REUSE: Duration = Duration::from_millis(500);

/// The last rendered text and when it was rendered. One scrape renders at a time; those
/// arriving meanwhile wait for it and take its text.
pub struct ScrapeCache {
    reuse: Duration,
    last: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl ScrapeCache {
    pub fn new(reuse: Duration) -> Self {
        Self {
            reuse,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The text rendered within `reuse`, or a new one from `render` (`None`, the core did
    /// not answer, is not kept).
    pub async fn get<F, Fut>(&self, render: F) -> Option<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<String>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, text)) = last.as_ref() {
            if at.elapsed() < self.reuse {
                return Some(text.clone());
            }
        }
        let text = render().await?;
        *last = Some((Instant::now(), text.clone()));
        Some(text)
    }
}

/// Serves scrapes forever (accept errors are logged and retried).
pub async fn serve(listener: TcpListener, handle: NodeHandle) {
    let slots = Arc::new(Semaphore::new(SCRAPES_MAX));
    let cache = Arc::new(ScrapeCache::new(SCRAPE_REUSE));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics connection closed: {SCRAPES_MAX} scrapes in progress");
            continue;
        };
        let handle = handle.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            let render = move || async move {
                cached_scrape(&cache, CORE_TIMEOUT, || {
                    super::scrape(&handle, CORE_TIMEOUT)
                })
                .await
            };
            serve_connection(stream, READ_TIMEOUT, render).await;
            drop(slot);
        });
    }
}

/// A text from `cache` within `timeout`, the wait for another scrape's turn included
/// (`None` past it: answered 503).
async fn cached_scrape<F, Fut>(cache: &ScrapeCache, timeout: Duration, render: F) -> Option<String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    tokio::time::timeout(timeout, cache.get(render))
        .await
        .ok()
        .flatten()
}

/// What one request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    /// `HEAD /metrics`: the answer to GET without its body.
    MetricsHead,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

fn route(head: &[u8]) -> Route {
    let Ok(head) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (path, method) {
        ("/metrics", "GET") => Route::Metrics,
        ("/metrics", "HEAD") => Route::MetricsHead,
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// Reads one request head and writes one answer; `render` gives the exposition text
/// (`None`: the core did not answer in time). Never fails the caller.
async fn serve_connection<S, F, Fut>(mut stream: S, read_timeout: Duration, render: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let head = match tokio::time::timeout(read_timeout, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => Some(head),
        Ok(Ok(None)) => None,
        // Timed out, or the client went away: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    let asked = head.as_deref().map(route);
    let mut response = match asked {
        None => plain(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        ),
        Some(Route::BadRequest) => plain(400, "Bad Request", "bad request\n"),
        Some(Route::NotFound) => plain(404, "Not Found", "not found; try /metrics\n"),
        Some(Route::MethodNotAllowed) => {
            let mut response = plain(405, "Method Not Allowed", "only GET and HEAD\n");
            response.insert_str(
                response.find("\r\n").map_or(0, |at| at + 2),
                "Allow: GET, HEAD\r\n",
            );
            response
        }
        Some(Route::Metrics | Route::MetricsHead) => match render().await {
            Some(body) => answer(200, "OK", CONTENT_TYPE, &body),
            None => plain(
                503,
                "Service Unavailable",
                "the node's core did not answer in time\n",
            ),
        },
    };
    if asked == Some(Route::MetricsHead) {
        // The head of the GET answer, its Content-Length included.
        if let Some(end) = response.find("\r\n\r\n") {
            response.truncate(end + 4);
        }
    }
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
}

/// The request head up to its blank line (CRLF CRLF, or bare LFs); `Ok(None)` if it
/// exceeds [`HEAD_BYTES_MAX`].
async fn read_head<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let read = reader.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = blank_line(&head) {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() > HEAD_BYTES_MAX {
            return Ok(None);
        }
    }
}

/// Where the line ending before the head's blank line starts: the first LF followed by
/// LF or CR LF.
fn blank_line(head: &[u8]) -> Option<usize> {
    head.iter().enumerate().find_map(|(at, byte)| {
        let rest = &head[at + 1..];
        (*byte == b'\n' && (rest.starts_with(b"\n") || rest.starts_with(b"\r\n"))).then(|| {
            if at > 0 && head[at - 1] == b'\r' {
                at - 1
            } else {
                at
            }
        })
    })
}

fn plain(status: u16, reason: &str, body: &str) -> String {
    answer(status, reason, "text/plain; charset=utf-8", body)
}

fn answer(status: u16, reason: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `request` to a connection served with `body` as the metrics text; returns
    /// everything the server wrote before closing.
    async fn exchange(request: Vec<u8>) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(serve_connection(server, READ_TIMEOUT, || async {
            Some("myelin_x 1\n".to_string())
        }));
        // The server may close before taking all of an oversized head.
        let _ = client.write_all(&request).await;
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        served.await.unwrap();
        String::from_utf8(received).unwrap()
    }

    #[tokio::test]
    async fn get_metrics_answers_the_text_format_and_closes() {
        let response = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
        assert!(response.contains("Connection: close\r\n"));
        assert!(response.contains("Content-Length: 11\r\n"));
        assert!(response.ends_with("\r\n\r\nmyelin_x 1\n"));
        let response = exchange(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n".to_vec()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }

    #[tokio::test]
    async fn head_metrics_answers_the_get_head_without_the_body() {
        let response = exchange(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
        assert!(response.contains("Content-Length: 11\r\n"), "{response}");
        assert!(
            response.ends_with("Connection: close\r\n\r\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn a_head_whose_lines_end_in_bare_lf_is_served() {
        let response = exchange(b"GET /metrics HTTP/1.0\n\n".to_vec()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nmyelin_x 1\n"), "{response}");
        let response = exchange(b"GET /metrics HTTP/1.1\nHost: x\r\n\r\n".to_vec()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert_eq!(blank_line(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(23));
        assert_eq!(blank_line(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(blank_line(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[tokio::test]
    async fn scrapes_within_the_reuse_window_render_once() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let renders = AtomicU64::new(0);
        let render = || async {
            let count = renders.fetch_add(1, Ordering::Relaxed) + 1;
            Some(format!("myelin_render {count}\n"))
        };
        let cache = ScrapeCache::new(Duration::from_secs(3600));
        // A failed render (the core did not answer) is not kept.
        assert_eq!(cache.get(|| async { None }).await, None);
        assert_eq!(
            cache.get(render).await.as_deref(),
            Some("myelin_render 1\n")
        );
        assert_eq!(
            cache.get(render).await.as_deref(),
            Some("myelin_render 1\n")
        );
        assert_eq!(renders.load(Ordering::Relaxed), 1);
        // Past the window (here zero), each scrape renders.
        let cache = ScrapeCache::new(Duration::ZERO);
        assert_eq!(
            cache.get(render).await.as_deref(),
            Some("myelin_render 2\n")
        );
        assert_eq!(
            cache.get(render).await.as_deref(),
            Some("myelin_render 3\n")
        );
    }

    #[tokio::test]
    async fn a_scrape_behind_a_stuck_one_gives_up_within_its_timeout() {
        let cache = Arc::new(ScrapeCache::new(Duration::ZERO));
        let stuck = cache.clone();
        let holder =
            tokio::spawn(async move { stuck.get(std::future::pending::<Option<String>>).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let behind = cached_scrape(&cache, Duration::from_millis(50), || async {
            Some("myelin_x 1\n".to_string())
        })
        .await;
        assert_eq!(behind, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        holder.abort();
    }

    #[tokio::test]
    async fn other_paths_are_404_and_other_methods_405() {
        let response = exchange(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(
            response.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{response}"
        );
        let response = exchange(b"POST /metrics HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(
            response.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"),
            "{response}"
        );
        let response = exchange(b"nonsense\r\n\r\n".to_vec()).await;
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431_and_the_connection_closes() {
        let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
        request.extend(std::iter::repeat_n(b'x', HEAD_BYTES_MAX + 10));
        let response = exchange(request).await;
        assert!(
            response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_head_is_dropped_after_the_read_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let read_timeout = Duration::from_millis(50);
        let served = tokio::spawn(serve_connection(server, read_timeout, || async { None }));
        client
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        served.await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert!(received.is_empty());
    }

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /metrics HTTP/1.1"), Route::Metrics);
        assert_eq!(route(b"HEAD /metrics HTTP/1.1"), Route::MetricsHead);
        assert_eq!(route(b"PUT /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(route(b"GET /metricsx HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"GET /metrics SPDY"), Route::BadRequest);
        assert_eq!(route(&[0xff, 0xfe]), Route::BadRequest);
    }
}
