//! Fault injection over real HTTP: [`FaultyHttp`], an endpoint on a free loopback port that
//! answers every request with one fixed error response and counts the requests (a KMS that
//! only ever throttles), and [`FaultProxy`], a proxy in front of a real KMS server that adds
//! latency, stops answering or fails some requests while a test runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running fault endpoint; stops when dropped.
pub struct FaultyHttp {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyHttp {
    /// Answers every request with `status`, `content_type` and `body`.
    pub async fn always(status: u16, content_type: &'static str, body: &'static str) -> Self {
        let (listener, endpoint) = crate::servers::bind_loopback_http().await;
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(serve(stream, counter, status, content_type, body));
            }
        });
        Self {
            endpoint,
            requests,
            task,
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/1.1 requests on one connection (keep-alive) until the peer closes it.
async fn serve(
    mut stream: TcpStream,
    counter: Arc<AtomicUsize>,
    status: u16,
    content_type: &str,
    body: &str,
) {
    let mut buf = Vec::new();
    while read_request(&mut stream, &mut buf).await.is_some() {
        counter.fetch_add(1, Ordering::SeqCst);
        let response = format!(
            "HTTP/1.1 {status} Injected\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// What a [`FaultProxy`] does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards it.
    Pass,
    /// Forwards it after this long (a slow KMS).
    Delay(std::time::Duration),
    /// Reads it and never answers (a KMS that stopped answering; the connection stays open).
    Blackhole,
    /// Answers every `every`-th request itself with this status and a Vault/AWS-style JSON
    /// error (`429`: throttling; `500`/`503`: server errors), forwarding the others.
    Fail {
        /// The HTTP status.
        status: u16,
        /// 1: every request; 2: every other one; …
        every: usize,
    },
}

/// An HTTP/1.1 proxy on a free loopback port in front of a real KMS server, injecting the
/// current [`Fault`] (changeable at any time) into the requests it relays. Each request is
/// forwarded on a fresh upstream connection with `connection: close`, and the client's
/// connection is closed after the answer, so a changed fault applies to the next request.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: point the client here instead of at the server.
    pub endpoint: String,
    fault: Arc<std::sync::Mutex<Fault>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://HOST:PORT`), passing everything through.
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let (listener, endpoint) = crate::servers::bind_loopback_http().await;
        let fault = Arc::new(std::sync::Mutex::new(Fault::Pass));
        let requests = Arc::new(AtomicUsize::new(0));
        let (f, r) = (fault.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(relay(stream, upstream.clone(), f.clone(), r.clone()));
            }
        });
        Self {
            endpoint,
            fault,
            requests,
            task,
        }
    }

    /// Changes the fault for the requests that arrive from now on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Requests received so far (forwarded or not).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and Content-Length body) from `stream`, through `buf` (which
/// keeps what was read beyond it, for the next request); `None` at EOF.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf.drain(..head_end + length).collect())
}

/// The request with its `connection` headers replaced by `connection: close`.
fn closing(request: &[u8]) -> Vec<u8> {
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |i| i + 2);
    let head = String::from_utf8_lossy(&request[..head_end]);
    let mut out: String = head
        .split_inclusive("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("keep-alive:")
        })
        .collect();
    out.push_str("connection: close\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&request[head_end..]);
    bytes
}

async fn relay(
    mut client: TcpStream,
    upstream: String,
    fault: Arc<std::sync::Mutex<Fault>>,
    requests: Arc<AtomicUsize>,
) {
    let Some(request) = read_request(&mut client, &mut Vec::new()).await else {
        return;
    };
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    let current = *fault.lock().unwrap_or_else(|e| e.into_inner());
    match current {
        Fault::Blackhole => {
            // Hold the connection until the client gives up.
            let mut sink = [0u8; 1024];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        Fault::Fail { status, every } if every > 0 && n.is_multiple_of(every) => {
            let body = format!(
                r#"{{"errors":["injected fault {status}"],"__type":"ThrottlingException","message":"injected fault {status}"}}"#
            );
            let response = format!(
                "HTTP/1.1 {status} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            return;
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Pass | Fault::Fail { .. } => {}
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return; // the server is down: the client sees its connection closed
    };
    if server.write_all(&closing(&request)).await.is_err() {
        return;
    }
    let mut response = Vec::new();
    if server.read_to_end(&mut response).await.is_err() {
        return;
    }
    let _ = client.write_all(&response).await;
}
