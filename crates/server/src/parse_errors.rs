//! Chroma's error JSON for requests hyper cannot parse.
//!
//! hyper responds to a request it cannot parse (control bytes in a header value, a
//! malformed request line, headers over its buffer) itself, before any handler runs,
//! with a status line, `content-length: 0` and no body, and then closes the connection.
//! It has no hook to supply a body. [`ErrorBodies`] wraps the connection's byte stream
//! and, when hyper writes such a bodiless 4xx response, sends the same status with
//! Chroma's error JSON instead, so every client sees an error it can read.
//!
//! The handlers never send a 4xx without a body, so a bodiless 4xx is always hyper's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use api::error::{ApiError, ErrorKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection stream that adds Chroma's error JSON to hyper's own error responses.
///
/// It reports no vectored writes, so hyper writes each response from one buffer and a
/// bodiless response head arrives whole in one `poll_write`.
pub struct ErrorBodies<S> {
    inner: S,
    /// A replacement response, and how much of it has been written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> ErrorBodies<S> {
    pub fn new(inner: S) -> ErrorBodies<S> {
        ErrorBodies {
            inner,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> ErrorBodies<S> {
    /// Writes what is left of a replacement response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(count)) => *written += count,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ErrorBodies<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(error) = std::task::ready!(this.poll_pending(cx)) {
            return Poll::Ready(Err(error));
        }
        if let Some(replacement) = with_error_body(buf) {
            this.pending = Some((replacement, 0));
            // The caller's bytes are taken in full; the replacement goes out here or
            // in a later write or flush.
            if let Poll::Ready(Err(error)) = this.poll_pending(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// If `buf` is exactly one bodiless 4xx response head, returns the same response with
/// Chroma's error JSON as its body.
fn with_error_body(buf: &[u8]) -> Option<Vec<u8>> {
    const END: &[u8] = b"\r\n\r\n";
    let head = buf.strip_prefix(b"HTTP/1.1 ")?.strip_suffix(END)?;
    let status = head.get(..3)?;
    if status[0] != b'4' || !status.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // One head and nothing after it.
    if head.windows(END.len()).any(|window| window == END) {
        return None;
    }
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut others = Vec::new();
    let mut bodiless = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            if value.trim() != "0" {
                return None;
            }
            bodiless = true;
        } else if !name.eq_ignore_ascii_case("content-type") {
            others.push(line);
        }
    }
    if !bodiless {
        return None;
    }

    let error = match &status_line[..3] {
        "431" => ApiError::new(
            ErrorKind::HeadersTooLarge,
            "the request headers are larger than the server accepts",
        ),
        "414" => ApiError::new(
            ErrorKind::UriTooLong,
            "the request line is longer than the server accepts",
        ),
        _ => ApiError::invalid(
            "the request is not valid HTTP/1.1: its request line or a header contains bytes that HTTP does not allow, such as control characters",
        ),
    };
    let body = error.to_json();
    let mut response = format!("HTTP/1.1 {status_line}\r\n");
    for line in others {
        response.push_str(line);
        response.push_str("\r\n");
    }
    response.push_str("content-type: application/json\r\n");
    response.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    response.push_str(&body);
    Some(response.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::with_error_body;

    #[test]
    fn bodiless_client_errors_get_error_json() {
        let replaced = with_error_body(
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 05 Dec 2026 02:00:00 GMT\r\n\r\n",
        )
        .unwrap();
        let text = String::from_utf8(replaced).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("\r\nconnection: close\r\n"));
        assert!(head.contains("\r\ndate: Sat, 05 Dec 2026 02:00:00 GMT\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "InvalidArgumentError");

        let too_large = String::from_utf8(
            with_error_body(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
            )
            .unwrap(),
        )
        .unwrap();
        assert!(too_large.starts_with("HTTP/1.1 431 "));
        assert!(too_large.contains("\"error\":\"ChromaError\""));
    }

    #[test]
    fn other_responses_pass_unchanged() {
        for response in [
            // A handler's error with its body.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"[..],
            &b"HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            &b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"[..],
            // Two responses in one buffer.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"[..],
            // A part of a response.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"[..],
            &b"{\"error\":\"x\"}"[..],
            &b""[..],
        ] {
            assert!(with_error_body(response).is_none(), "{response:?}");
        }
    }
}
