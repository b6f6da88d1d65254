//! Fault injection: an HTTP endpoint on a free loopback port that answers every request with
//! one fixed error response and counts the requests, to prove retry and error handling
//! against real HTTP (for instance a KMS that only ever throttles).

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
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request: headers, then Content-Length bytes of body.
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let headers = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let length = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < header_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..header_end + length);
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
