//! A minimal HTTP/1.1 server for the status routes ([`crate::status::respond`]): one request per
//! connection, GET and HEAD, answered from memory.
//!
//! It replaced axum (with hyper, http and tower) in the router build, where four GET routes did
//! not earn their share of a 4 MiB binary (issue 20). What it does:
//!
//! - reads the request head (request line and headers) up to [`MAX_HEAD`] bytes, else answers
//!   431; within [`HEAD_TIMEOUT`], else answers 408 and closes, so idle sockets do not pile up;
//! - answers a malformed head with 400, and writes within [`WRITE_TIMEOUT`];
//! - sends `Content-Type`, `Content-Length` and `Connection: close`, then closes: no keep-alive,
//!   no pipelining, and a request body is never read (no route takes one);
//! - serves at most [`MAX_CONNECTIONS`] connections at once; further ones wait in the listen
//!   backlog.
//!
//! The parsing ([`parse_head`]) is sans-IO; [`serve_connection`] runs one exchange on any byte
//! stream (the tests drive it through an in-memory pipe on paused time) and [`serve`] accepts
//! TCP connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// The largest request head read (request line and headers): 8 KiB, hyper's order of
/// magnitude and far above what `curl`, Prometheus or `wisp-agent status` send.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing a response may take (a client that stops reading is dropped).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once: a scraper, an operator and a few health checks need far fewer.
pub const MAX_CONNECTIONS: usize = 32;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The target's path, without the query string.
    pub path: String,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header of this name (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the method reads (GET or HEAD), the only methods the routes take.
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }
}

/// A response: status, content type and body (a HEAD request gets the headers only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// An `Allow` header (for 405).
    pub allow: Option<&'static str>,
}

/// Plain text, what axum sent for a string body.
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    /// A response with this status, type and body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            allow: None,
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, TEXT, body)
    }

    /// 404: no such path.
    pub fn not_found() -> Response {
        Response::text(404, "not found\n")
    }

    /// 405 for a method other than GET and HEAD.
    pub fn method_not_allowed() -> Response {
        Response {
            allow: Some("GET, HEAD"),
            ..Response::text(405, "method not allowed\n")
        }
    }

    /// The bytes on the wire: the status line, the headers and (unless `head_only`) the body.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            out.push_str(&format!("Allow: {allow}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not an HTTP/1.x request head.
    Malformed,
    /// Longer than [`MAX_HEAD`].
    TooLarge,
}

impl HeadError {
    /// The answer to it.
    pub fn response(self) -> Response {
        match self {
            HeadError::Malformed => Response::text(400, "bad request\n"),
            HeadError::TooLarge => Response::text(431, "request head too large\n"),
        }
    }
}

/// Where the head in `buf` ends (after its blank line), once it is complete. Bare `\n` line
/// ends are accepted, as most servers do.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).enumerate().find_map(|(i, w)| match w {
        b"\n\n" => Some(i + 2),
        b"\n\r" if buf.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

/// Parses a complete request head (as delimited by [`head_end`]).
pub fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    if head.len() > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !is_token(method)
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Err(HeadError::Malformed);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        if !is_token(name) {
            return Err(HeadError::Malformed);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
    })
}

/// Reads a request head from `io`: `Ok(None)` when the client closed before sending anything.
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> Result<Option<Request>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = io
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Malformed)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Malformed)
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            return parse_head(&buf[..end]).map(Some);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Serves one request on `io`: reads its head within [`HEAD_TIMEOUT`], answers with
/// `handler` (or the error's response), and closes.
pub async fn serve_connection<S, H>(mut io: S, handler: &H)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(&Request) -> Response,
{
    let (response, head_only) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut io)).await {
        Err(_) => (Response::text(408, "request timeout\n"), false),
        Ok(Ok(None)) => return,
        Ok(Ok(Some(req))) => (handler(&req), req.method == "HEAD"),
        Ok(Err(e)) => (e.response(), false),
    };
    let write = async {
        io.write_all(&response.to_bytes(head_only)).await?;
        io.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        debug!("status server: writing a response: {e}");
    }
}

/// Accepts connections on `listener` forever, at most [`MAX_CONNECTIONS`] at once, each
/// served by [`serve_connection`] in its own task.
pub async fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A permit before accepting: past the cap, connections wait in the kernel's backlog.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    serve_connection(stream, &*handler).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors, usually: give the open connections time to close.
                warn!("status server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
