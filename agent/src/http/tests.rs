use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use super::*;

/// The handler the exchanges run against: `/x` answers GET and HEAD with `hello` and echoes
/// the `Accept` header in its content type's place of the body.
fn handler(req: &Request) -> Response {
    if req.path != "/x" {
        return Response::not_found();
    }
    if !req.is_read() {
        return Response::method_not_allowed();
    }
    let accept = req.header("accept").unwrap_or("-");
    Response::text(200, format!("hello {accept}"))
}

/// Sends `request` to a connection served by [`serve_connection`] and returns everything it
/// answered before closing.
async fn exchange(request: &[u8]) -> String {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move { serve_connection(server, &handler).await });
    client.write_all(request).await.unwrap();
    // The request is all there is: the server reads its end after it.
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    task.await.unwrap();
    String::from_utf8(out).unwrap()
}

/// The status line and the body of an answer.
fn split(answer: &str) -> (&str, &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect(answer);
    (head.lines().next().unwrap(), body)
}

#[tokio::test]
async fn requests_get_their_status() {
    let big = format!("GET /x HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    let cases: &[(&[u8], &str)] = &[
        (b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK"),
        (b"GET /x?since=1 HTTP/1.0\n\n", "HTTP/1.1 200 OK"),
        (b"GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"DELETE /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /x HTTP/2.0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET x HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET  /x HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"G(T /x HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (
            b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            b"GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            b"GET /x HTTP/1.1\r\n\xff: v\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        // The client closed in the middle of its head.
        (b"GET /x HTTP/1.1\r\nHost:", "HTTP/1.1 400 Bad Request"),
        (
            big.as_bytes(),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            &[b'G'; MAX_HEAD + 1],
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ];
    for (request, status) in cases {
        let answer = exchange(request).await;
        assert_eq!(
            split(&answer).0,
            *status,
            "{}",
            String::from_utf8_lossy(request)
        );
    }
}

#[tokio::test]
async fn an_answer_has_its_length_type_and_closes() {
    let answer = exchange(b"GET /x HTTP/1.1\r\naccept: text/x\r\n\r\n").await;
    assert_eq!(
        answer,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\
         Connection: close\r\n\r\nhello text/x"
    );
}

#[tokio::test]
async fn head_sends_the_headers_of_get_without_the_body() {
    let answer = exchange(b"HEAD /x HTTP/1.1\r\n\r\n").await;
    let (status, body) = split(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(answer.contains("Content-Length: 7\r\n"), "{answer}");
    assert_eq!(body, "");
}

#[tokio::test]
async fn a_refused_method_is_told_the_allowed_ones() {
    let answer = exchange(b"PUT /x HTTP/1.1\r\n\r\n").await;
    assert!(answer.contains("\r\nAllow: GET, HEAD\r\n"), "{answer}");
}

#[tokio::test]
async fn a_connection_closed_without_a_request_gets_no_answer() {
    assert_eq!(exchange(b"").await, "");
}

#[tokio::test(start_paused = true)]
async fn a_client_slower_than_the_head_timeout_gets_408_and_is_closed() {
    let (mut client, server) = tokio::io::duplex(1024);
    let start = Instant::now();
    let task = tokio::spawn(async move { serve_connection(server, &handler).await });
    // Half a head, then nothing: the server must not wait for the rest forever.
    client.write_all(b"GET /x HTTP/1.1\r\n").await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    task.await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= HEAD_TIMEOUT && waited < HEAD_TIMEOUT * 2,
        "{waited:?}"
    );
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("HTTP/1.1 408 Request Timeout\r\n")
    );
}

#[test]
fn the_head_ends_at_its_blank_line() {
    assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
    assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
    assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    let req = parse_head(b"GET /status?x HTTP/1.1\r\nACCEPT: a/b\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(req.path, "/status");
    assert_eq!(req.header("Accept"), Some("a/b"));
    assert_eq!(req.header("x-none"), None);
}
