//! The harness's HTTP/1.1 client: keep-alive connections from a pool, one request at a
//! time on each, straight on hyper's connection API.
//!
//! A general-purpose client (reqwest) spends its CPU on what a load generator does not
//! need: URL parsing and a pool keyed by host per request, redirect and proxy handling,
//! per-request timers and header maps. On a machine whose cores the server shares, every
//! microsecond the client spends is one the server does not get, and at one request at a
//! time it is added to the measured latency. Here a request is a path, a few fixed
//! headers and a pre-encoded body.

use crate::failure::FailKind;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::http::uri::Authority;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Keep-alive HTTP/1.1 connections to one server, opened on demand and reused.
pub struct HttpPool {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    authority: HeaderValue,
    /// Connections with no request in flight.
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// Longest one request (connecting, sending, reading the answer) may take.
    timeout: Duration,
    /// Most connections open at once (a permit per request in flight); `None`: one per
    /// request in flight.
    cap: Option<Semaphore>,
}

/// One request's answer: status and complete body.
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

/// The `host:port` to connect to for a server at `base` (`http://host[:port]`, port 80 when
/// none, an optional trailing path ignored), and its authority as requests name it.
pub(crate) fn server_address(base: &str) -> anyhow::Result<(String, Authority)> {
    let uri: hyper::Uri = base
        .parse()
        .map_err(|e| anyhow::anyhow!("'{base}': not an address: {e}"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("'{base}': only http:// addresses are supported");
    }
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| anyhow::anyhow!("'{base}': no host"))?
        .clone();
    let addr = match authority.port_u16() {
        Some(_) => authority.as_str().to_string(),
        None => format!("{}:80", authority.host()),
    };
    Ok((addr, authority))
}

impl HttpPool {
    /// A pool for the server at `base` (`http://host:port`, an optional trailing path
    /// ignored); requests time out after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let (addr, authority) = server_address(base)?;
        Ok(HttpPool {
            addr,
            authority: HeaderValue::from_str(authority.as_str())?,
            idle: Mutex::new(Vec::new()),
            timeout,
            cap: None,
        })
    }

    /// Opens at most `n` connections (0: no cap); a request finding them all busy waits
    /// for one, and that wait counts in its latency.
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.cap = (n > 0).then(|| Semaphore::new(n));
        self
    }

    /// An idle connection that can take a request, or a new one.
    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, FailKind> {
        loop {
            let next = self.idle.lock().expect("pool lock").pop();
            let Some(mut c) = next else { break };
            // A connection the server closed is dropped; the next one is tried.
            if !c.is_closed() && c.ready().await.is_ok() {
                return Ok(c);
            }
        }
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|_| FailKind::Transport)?;
        stream.set_nodelay(true).map_err(|_| FailKind::Transport)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| FailKind::Transport)?;
        // The connection task ends when the sender is dropped or the server closes it.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// `POST path` with `body` and the given content type and extra header; the status and
    /// the whole answer, or why none came.
    pub async fn post(
        &self,
        path: &str,
        content_type: &'static str,
        extra: Option<(HeaderName, HeaderValue)>,
        body: Bytes,
    ) -> Result<Answer, FailKind> {
        let exchange = async {
            // Held until the answer is in: a connection is busy exactly that long.
            let _permit = match &self.cap {
                Some(cap) => Some(cap.acquire().await.map_err(|_| FailKind::Transport)?),
                None => None,
            };
            let mut conn = self.connection().await?;
            let len = body.len();
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(HOST, self.authority.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
                .header(CONTENT_LENGTH, HeaderValue::from(len));
            if let Some((name, value)) = extra {
                req = req.header(name, value);
            }
            let req = req.body(Full::new(body)).map_err(|_| FailKind::Transport)?;
            let resp = conn
                .send_request(req)
                .await
                .map_err(|_| FailKind::Transport)?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|_| FailKind::Transport)?
                .to_bytes();
            // Answered in full: the connection can carry the next request.
            self.idle.lock().expect("pool lock").push(conn);
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FailKind::Timeout)?
    }

    /// Connections currently idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection-at-a-time HTTP/1.1 server that echoes each request's body back
    /// with status 200 (or 503 when the body is "fail"), counting connections.
    async fn echo_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Read one request: headers, then Content-Length bytes of body.
                        let (head_end, len) = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                                let len = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                                    .unwrap_or(0);
                                break (i + 4, len);
                            }
                            let n = s.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        };
                        while buf.len() < head_end + len {
                            let n = s.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
                        let status = if body == b"fail" {
                            "503 Unavailable"
                        } else {
                            "200 OK"
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        s.write_all(head.as_bytes()).await.unwrap();
                        s.write_all(&body).await.unwrap();
                    }
                });
            }
        });
        (format!("http://{addr}"), conns)
    }

    #[tokio::test]
    async fn posts_reuse_connections_and_return_status_and_body() {
        let (base, conns) = echo_server().await;
        let pool = HttpPool::new(&base, Duration::from_secs(5)).unwrap();
        for i in 0..20 {
            let body = Bytes::from(format!("request {i}"));
            let a = pool
                .post("/v2/models/m/infer", "application/json", None, body.clone())
                .await
                .unwrap();
            assert_eq!(a.status, StatusCode::OK);
            assert_eq!(a.body, body);
        }
        // One request at a time: one connection, kept alive and reused.
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle_connections(), 1);
        let a = pool
            .post("/x", "application/json", None, Bytes::from_static(b"fail"))
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    /// Posts `n` distinct 10 kB bodies at once through `pool`, each checked echoed back;
    /// the connections the echo server accepted.
    async fn post_concurrently(
        pool: HttpPool,
        n: usize,
        conns: &std::sync::atomic::AtomicUsize,
    ) -> (usize, std::sync::Arc<HttpPool>) {
        let pool = std::sync::Arc::new(pool);
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let body = Bytes::from(vec![b'a' + i as u8; 10_000]);
                    let a = pool
                        .post("/p", "application/octet-stream", None, body.clone())
                        .await
                        .unwrap();
                    assert_eq!(a.body, body);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (conns.load(std::sync::atomic::Ordering::SeqCst), pool)
    }

    #[tokio::test]
    async fn a_connection_cap_makes_concurrent_posts_wait_and_share() {
        let (base, conns) = echo_server().await;
        let pool = HttpPool::new(&base, Duration::from_secs(5))
            .unwrap()
            .with_max_connections(2);
        let (opened, pool) = post_concurrently(pool, 16, &conns).await;
        // All 16 answered over at most 2 connections (uncapped, each would open its own).
        assert!((1..=2).contains(&opened), "{opened} connections");
        assert_eq!(pool.idle_connections(), opened);
    }

    #[tokio::test]
    async fn concurrent_posts_open_one_connection_each_and_keep_them() {
        let (base, conns) = echo_server().await;
        let pool = HttpPool::new(&base, Duration::from_secs(5)).unwrap();
        let (opened, pool) = post_concurrently(pool, 8, &conns).await;
        assert!((1..=8).contains(&opened), "{opened} connections");
        assert_eq!(pool.idle_connections(), opened);
    }

    #[tokio::test]
    async fn no_server_is_a_transport_error_and_a_silent_one_a_timeout() {
        // A port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let pool =
            HttpPool::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let e = pool.post("/", "text/plain", None, Bytes::new()).await.err();
        assert_eq!(e, Some(FailKind::Transport));
        // A server that accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                held.push(s);
            }
        });
        let pool = HttpPool::new(&base, Duration::from_millis(200)).unwrap();
        let e = pool.post("/", "text/plain", None, Bytes::new()).await.err();
        assert_eq!(e, Some(FailKind::Timeout));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            HttpPool::new("http://127.0.0.1:8000", Duration::ZERO)
                .unwrap()
                .addr,
            "127.0.0.1:8000"
        );
        assert_eq!(
            HttpPool::new("http://localhost/", Duration::ZERO)
                .unwrap()
                .addr,
            "localhost:80"
        );
        assert!(HttpPool::new("https://x:1", Duration::ZERO).is_err());
        assert!(HttpPool::new("http://", Duration::ZERO).is_err());
    }
}
