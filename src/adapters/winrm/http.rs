//! Just enough HTTP/1.1 for WinRM: POST one request on a kept-alive connection (TCP or TLS) and
//! read its response (headers by `httparse`, a Content-Length or chunked body). NTLM authenticates
//! the connection, not the request, so one connection carries a session's requests in order.
//! Nothing here knows about WinRM or logs a header (an Authorization header holds credentials).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Response headers larger than this end the connection.
const MAX_HEADER: usize = 64 * 1024;
/// Response bodies larger than this end the connection (WinRM answers are at most
/// MaxEnvelopeSize, 150 KiB by default).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A byte stream to the server: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Every value of header `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One kept-alive connection to the endpoint.
pub struct Connection {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    /// The Host header value and the request path.
    host: String,
    path: String,
}

fn invalid(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

impl Connection {
    pub fn new(io: Box<dyn Stream>, host: String, path: String) -> Connection {
        Connection {
            io,
            buf: Vec::new(),
            host,
            path,
        }
    }

    /// POSTs `body` with `headers` (plus Host, Content-Length, keep-alive) and reads the response.
    pub async fn post(
        &mut self,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: upgrade WinRM client\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n",
            self.path,
            self.host,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.io.write_all(&out).await?;
        // The request holds credentials on Basic: its buffer is cleared before it is freed.
        zeroize::Zeroize::zeroize(&mut out);
        self.io.flush().await?;
        self.response().await
    }

    async fn response(&mut self) -> std::io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = parsed.code.unwrap_or_default();
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..head_len);
                    let mut response = Response {
                        status,
                        headers,
                        body: Vec::new(),
                    };
                    response.body = self.body(&response).await?;
                    return Ok(response);
                }
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEADER => {
                    return Err(invalid("the response headers are too large".into()))
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(e) => return Err(invalid(format!("not an HTTP response: {e}"))),
            }
        }
    }

    async fn body(&mut self, response: &Response) -> std::io::Result<Vec<u8>> {
        let chunked = response
            .header("Transfer-Encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.chunked().await;
        }
        let len = match response.header("Content-Length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| invalid(format!("Content-Length `{v}` is not a number")))?,
        };
        self.take(len).await
    }

    async fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size `{size}`")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(invalid("the response body is too large".into()));
            }
            body.extend_from_slice(&self.take(size).await?);
            self.line().await?;
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEADER {
                return Err(invalid("a chunk header line is too long".into()));
            }
            self.fill().await?;
        }
    }

    async fn take(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        if len > MAX_BODY {
            return Err(invalid(format!(
                "a response body of {len} bytes is too large"
            )));
        }
        while self.buf.len() < len {
            self.fill().await?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(raw: &'static [u8]) -> std::io::Result<Response> {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut req = vec![0u8; 4096];
            let _ = server.read(&mut req).await;
            let _ = server.write_all(raw).await;
        });
        let mut c = Connection::new(Box::new(client), "h:5985".into(), "/wsman".into());
        c.post(&[("Content-Type", "x")], b"body").await
    }

    #[tokio::test]
    async fn a_content_length_and_a_chunked_body_are_both_read_whole() {
        let r = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = answer(
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"abcde"[..]));
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_an_unexpected_eof() {
        let err = answer(b"HTTP/1.1 200 OK\r\nContent-Le").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
