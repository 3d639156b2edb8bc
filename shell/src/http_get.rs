//! A minimal HTTP GET over a std [`TcpStream`], for reading a local daemon's JSON API: the
//! oracle's operator commands and the devnet use it, so neither needs an HTTP client crate.
//! [`post`] sends a body the same way: the oracle's credit grants and the carrier tool's
//! reports.
//!
//! Everything is bounded: the connection attempt, the whole exchange ([`Limits::total`], one
//! deadline however slowly the bytes drip) and the response size ([`Limits::max_response`]).
//! The request is HTTP/1.0 with `Connection: close`, so the server sends the body as it is
//! (never chunked) and closes the connection at its end; a `Content-Length` that the body does
//! not match is reported as a truncated response. The path is refused unless it is visible
//! ASCII, so nothing taken from a command line can add a header.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a GET may take and how much it may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The TCP connection attempt.
    pub connect: Duration,
    /// The whole exchange after connecting: sending the request and reading the response.
    pub total: Duration,
    /// The largest response, header included, bytes.
    pub max_response: usize,
}

impl Default for Limits {
    /// 2 s to connect, 10 s for the exchange, 4 MiB: a local API's largest page with room.
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(2),
            total: Duration::from_secs(10),
            max_response: 4 << 20,
        }
    }
}

/// A response: its status code, its headers and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The headers, names and values trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body (invalid UTF-8 replaced).
    pub body: String,
}

impl Response {
    /// The value of the first header named `name` (in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is not a `/`-rooted string of visible ASCII.
    #[error("{method} {path:?}: not a request path (visible ASCII starting with `/`)")]
    BadPath {
        /// The request's method.
        method: &'static str,
        /// The path given.
        path: String,
    },
    /// Nothing accepted the connection (refused, unreachable or timed out).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The exchange failed after connecting.
    #[error("{method} {path} from {addr}: {source}")]
    Io {
        /// The request's method.
        method: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The response did not arrive within [`Limits::total`].
    #[error("{method} {path} from {addr}: no complete response within {after:?}")]
    Timeout {
        /// The request's method.
        method: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The limit.
        after: Duration,
    },
    /// The response is larger than [`Limits::max_response`].
    #[error("{method} {path} from {addr}: response over {max} bytes")]
    TooLarge {
        /// The request's method.
        method: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The limit.
        max: usize,
    },
    /// What came back is not an HTTP response, or a shorter one than its header announced.
    #[error("{method} {path} from {addr}: {why}")]
    Malformed {
        /// The request's method.
        method: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The status was not 200 ([`get`] only; [`fetch`] returns any status).
    #[error("GET {path}: HTTP {status}: {}", body.trim())]
    Status {
        /// The path.
        path: String,
        /// The status code.
        status: u16,
        /// The body, which often says why.
        body: String,
    },
}

/// GET `path` from `addr` with the default [`Limits`]; the body if the status is 200.
pub fn get(addr: SocketAddr, path: &str) -> Result<String, Error> {
    let r = fetch(addr, path, &Limits::default())?;
    if r.status == 200 {
        Ok(r.body)
    } else {
        Err(Error::Status {
            path: path.to_string(),
            status: r.status,
            body: r.body,
        })
    }
}

/// GET `path` from `addr` within `limits`; the response whatever its status.
pub fn fetch(addr: SocketAddr, path: &str, limits: &Limits) -> Result<Response, Error> {
    exchange(addr, "GET", path, None, limits)
}

/// POST `body` as `content_type` (a constant such as `application/json`) to `path` on `addr`
/// within `limits`; the response whatever its status.
pub fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &'static str,
    body: &[u8],
    limits: &Limits,
) -> Result<Response, Error> {
    exchange(addr, "POST", path, Some((content_type, body)), limits)
}

/// One request, with a body of a content type if given, and its whole response.
fn exchange(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    body: Option<(&'static str, &[u8])>,
    limits: &Limits,
) -> Result<Response, Error> {
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadPath {
            method,
            path: path.into(),
        });
    }
    let io = |source| Error::Io {
        method,
        addr,
        path: path.into(),
        source,
    };
    let mut s = TcpStream::connect_timeout(&addr, limits.connect)
        .map_err(|source| Error::Connect { addr, source })?;
    let deadline = Instant::now() + limits.total;
    let timeout = || Error::Timeout {
        method,
        addr,
        path: path.into(),
        after: limits.total,
    };
    s.set_write_timeout(Some(limits.total)).map_err(io)?;
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n");
    if let Some((content_type, body)) = body {
        request += &format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request += "Connection: close\r\n\r\n";
    s.write_all(request.as_bytes()).map_err(io)?;
    if let Some((_, body)) = body {
        s.write_all(body).map_err(io)?;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timeout)?;
        s.set_read_timeout(Some(left)).map_err(io)?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout());
            }
            Err(e) => return Err(io(e)),
        }
        if buf.len() > limits.max_response {
            return Err(Error::TooLarge {
                method,
                addr,
                path: path.into(),
                max: limits.max_response,
            });
        }
    }
    parse(&buf).map_err(|why| Error::Malformed {
        method,
        addr,
        path: path.into(),
        why,
    })
}

/// The status, headers and body of a whole response.
fn parse(buf: &[u8]) -> Result<Response, &'static str> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header in the response")?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "the HTTP header is not text")?;
    let body = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut words = status_line.split(' ');
    let status = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") && code.len() == 3 => {
            code.parse().map_err(|_| "no status code in the response")?
        }
        _ => return Err("no HTTP status line in the response"),
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value
                .parse()
                .map_err(|_| "a Content-Length that is not a number")?;
            if len != body.len() {
                return Err("the response is shorter or longer than its Content-Length");
            }
        }
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    use super::{Error, Limits, fetch, get, post};

    /// A server on an ephemeral loopback port that answers one connection with `reply` after
    /// reading the request (its head, and the body its `Content-Length` announces), which the
    /// returned handle gives back.
    fn serve_once(reply: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !whole(&req) {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "request cut short");
                req.extend_from_slice(&b[..n]);
            }
            // The client may already have given up on a huge reply: a broken pipe is fine.
            let _ = s.write_all(&reply);
            String::from_utf8(req).unwrap()
        });
        (addr, h)
    }

    /// Whether `req` holds a request's head and all of the body it announces.
    fn whole(req: &[u8]) -> bool {
        let text = String::from_utf8_lossy(req);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let announced = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.parse().unwrap());
        body.len() >= announced
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_200_gives_its_body_and_the_request_is_a_plain_get() {
        let (addr, h) = serve_once(ok("{\"a\":1}"));
        assert_eq!(get(addr, "/v1/nodes").unwrap(), "{\"a\":1}");
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /v1/nodes HTTP/1.0\r\n"), "{req}");
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
    }

    #[test]
    fn another_status_is_an_error_with_the_body_and_fetch_returns_it() {
        let reply = b"HTTP/1.1 404 Not Found\r\n\r\n{\"error\":\"no node x\"}".to_vec();
        let (addr, h) = serve_once(reply.clone());
        let e = get(addr, "/v1/nodes/x").unwrap_err();
        assert!(
            matches!(&e, Error::Status { status: 404, body, .. } if body.contains("no node x")),
            "{e}"
        );
        h.join().unwrap();
        let (addr, h) = serve_once(reply);
        let r = fetch(addr, "/v1/nodes/x", &Limits::default()).unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "{\"error\":\"no node x\"}")
        );
        h.join().unwrap();
    }

    #[test]
    fn a_post_sends_its_body_with_type_and_length_and_gets_the_headers_back() {
        let reply =
            b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\nRetry-After: 3\r\n\r\n{}";
        let (addr, h) = serve_once(reply.to_vec());
        let r = post(
            addr,
            "/v1/x",
            "application/json",
            b"{\"a\":1}",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (429, "{}"));
        assert_eq!(r.header("retry-after"), Some("3"));
        assert_eq!(r.header("Content-Length"), Some("2"));
        assert_eq!(r.header("x-absent"), None);
        let req = h.join().unwrap();
        assert!(req.starts_with("POST /v1/x HTTP/1.0\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"a\":1}"), "{req}");
        assert!(
            req.contains("\r\nContent-Type: application/json\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nContent-Length: 7\r\n"), "{req}");

        let e = post(addr, "/a b", "application/json", b"", &Limits::default()).unwrap_err();
        assert!(e.to_string().starts_with("POST \"/a b\""), "{e}");
    }

    #[test]
    fn oversize_truncated_and_headerless_responses_are_refused() {
        let limits = Limits {
            max_response: 1000,
            ..Limits::default()
        };
        let (addr, h) = serve_once(ok(&"x".repeat(2000)));
        let e = fetch(addr, "/", &limits).unwrap_err();
        assert!(matches!(e, Error::TooLarge { max: 1000, .. }), "{e}");
        h.join().unwrap();

        let (addr, h) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec());
        let e = get(addr, "/").unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{e}");
        assert!(e.to_string().contains("Content-Length"), "{e}");
        h.join().unwrap();

        let (addr, h) = serve_once(b"hello".to_vec());
        let e = get(addr, "/").unwrap_err();
        assert!(e.to_string().contains("no HTTP header"), "{e}");
        h.join().unwrap();
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Accepted by the kernel (the backlog) and never answered.
        let limits = Limits {
            total: Duration::from_millis(200),
            ..Limits::default()
        };
        let e = fetch(addr, "/", &limits).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        drop(l);
    }

    #[test]
    fn a_closed_port_is_a_connect_error_naming_the_address() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = get(addr, "/").unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }

    #[test]
    fn a_path_that_could_add_a_header_is_refused_before_connecting() {
        // Port 9 (discard) is never contacted: the path is checked first.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for p in ["/a b", "/a\r\nX: y", "relative", ""] {
            let e = get(addr, p).unwrap_err();
            assert!(matches!(e, Error::BadPath { .. }), "{p:?}: {e}");
        }
    }
}
