//! Just enough HTTP/1.1 for a WinRM listener: read one request (headers parsed by `httparse`, a
//! Content-Length body) from a kept-alive connection, and write one response with the headers
//! Windows' HTTP.sys sends. NTLM authenticates the connection, not the request, so the caller keeps
//! one connection's requests in order; nothing here knows about WinRM.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers larger than this are refused (HTTP.sys's default limit is of this order).
const MAX_HEADER: usize = 64 * 1024;
/// Bodies larger than this are refused (WinRM's MaxEnvelopeSize is 150 KiB by default).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A request that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad request: {0}")]
    Bad(String),
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Does the client ask to close the connection after this request?
    pub fn wants_close(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Response {
        self.headers
            .push(("Content-Type".to_string(), content_type.to_string()));
        self.body = body;
        self
    }
}

/// A connection's read side with what was read past the last request.
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            buf: Vec::new(),
        }
    }

    /// The next request; `None` when the client closed the connection between requests.
    pub async fn next(&mut self) -> Result<Option<Request>, HttpError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&self.buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let method = req.method.unwrap_or_default().to_string();
                    let path = req.path.unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    return self.body(method, path, headers, head_len).await.map(Some);
                }
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEADER => {
                    return Err(HttpError::Bad("request headers too large".into()))
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(HttpError::Bad(e.to_string())),
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(HttpError::Bad("connection closed inside a request".into()))
                };
            }
        }
    }

    async fn body(
        &mut self,
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        head_len: usize,
    ) -> Result<Request, HttpError> {
        let mut request = Request {
            method,
            path,
            headers,
            body: Vec::new(),
        };
        if request.header("Transfer-Encoding").is_some() {
            return Err(HttpError::Bad(
                "Transfer-Encoding is not supported by the lab's listener; send Content-Length"
                    .into(),
            ));
        }
        let len = match request.header("Content-Length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| HttpError::Bad(format!("Content-Length `{v}` is not a number")))?,
        };
        if len > MAX_BODY {
            return Err(HttpError::Bad(format!("body of {len} bytes is too large")));
        }
        while self.buf.len() < head_len + len {
            if self.fill().await? == 0 {
                return Err(HttpError::Bad("connection closed inside a body".into()));
            }
        }
        request.body = self.buf[head_len..head_len + len].to_vec();
        self.buf.drain(..head_len + len);
        Ok(request)
    }

    async fn fill(&mut self) -> Result<usize, HttpError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.inner.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// Writes `resp` with the headers HTTP.sys adds (Server, Content-Length).
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, resp: &Response) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (n, v) in &resp.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("Server: Microsoft-HTTPAPI/2.0\r\n");
    head.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    w.write_all(&out).await?;
    w.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}
