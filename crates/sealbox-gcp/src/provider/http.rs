//! REST calls to Cloud KMS: bounded retries, and response bodies in zeroizing memory.

use std::time::Duration;

use sealbox_core::transport::Backoff;
use sealbox_core::{ProviderError, ProviderErrorKind};
use zeroize::Zeroizing;

use super::GcpKms;
use crate::SCOPE;
use crate::error::{classify, error_chain};

/// Waits between attempts of a call: 100 ms, 200 ms, … at most 2 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// The largest response body read from Cloud KMS (its answers are well under 64 KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// Appends `data` to `buf` without letting `Vec` reallocate behind our back: when `buf` is
/// full, its contents move to a larger zeroizing buffer and the old one is wiped on drop.
fn push_zeroizing(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    if buf.capacity() - buf.len() < data.len() {
        let wanted = (buf.len() + data.len()).max(buf.capacity() * 2);
        let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
        bigger.extend_from_slice(buf);
        std::mem::swap(buf, &mut bigger);
    }
    buf.extend_from_slice(data);
}

impl GcpKms {
    /// One REST call with bounded retries on 429 / 5xx / connection errors.
    pub(super) async fn call_parsed<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, ProviderError> {
        let text = self.call(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| {
            self.err(
                ProviderErrorKind::Protocol,
                format!("invalid JSON from Cloud KMS: {e}"),
            )
        })
    }

    /// One REST call with bounded retries; returns the response body in zeroizing memory.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Zeroizing<String>, ProviderError> {
        let url = format!("{}/v1/{path}", self.endpoint);
        // Zeroize: the body may hold a data key (`:encrypt`). Copy it once into memory that
        // is wiped when reqwest drops its last reference (a `Bytes` whose owner is
        // `Zeroizing`); each attempt shares it instead of copying it again.
        let body =
            body.map(|b| bytes::Bytes::from_owner(Zeroizing::new(b.to_vec())) as bytes::Bytes);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.auth.token(&[SCOPE]).await.map_err(|e| {
                self.err(
                    ProviderErrorKind::PermissionDenied,
                    format!("cannot obtain a Google access token: {}", error_chain(&e)),
                )
            })?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.as_str());
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let (kind, message) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match self.read_body(resp).await {
                        Ok(text) if status.is_success() => return Ok(text),
                        Ok(text) => classify(status, &text),
                        Err(failure) => failure,
                    }
                }
                Err(e) if e.is_timeout() => (
                    ProviderErrorKind::Timeout,
                    format!("request timed out: {e}"),
                ),
                Err(e) => (
                    ProviderErrorKind::Unavailable,
                    format!("cannot reach Cloud KMS: {e}"),
                ),
            };
            if kind.is_transient() && attempt < self.max_attempts {
                tokio::time::sleep(BACKOFF.delay(attempt)).await;
                continue;
            }
            let suffix = if kind.is_transient() && attempt > 1 {
                format!(" (after {attempt} attempts)")
            } else {
                String::new()
            };
            return Err(self.err(kind, format!("{message}{suffix}")));
        }
    }

    /// Reads a response body (at most [`MAX_RESPONSE`] bytes) into zeroizing memory.
    ///
    /// Zeroize: a `:decrypt` answer holds the data key (base64). `Response::text` would leave
    /// an unwiped `Bytes` copy and a second `String` copy; here every chunk goes straight into
    /// one zeroizing buffer that becomes the returned string without another copy. (The
    /// chunks themselves are `hyper`'s buffers, which cannot be wiped from here.)
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
    ) -> Result<Zeroizing<String>, (ProviderErrorKind, String)> {
        let expected = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(4096)
            .min(MAX_RESPONSE);
        let mut buf = Zeroizing::new(Vec::with_capacity(expected));
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_RESPONSE {
                        return Err((
                            ProviderErrorKind::Protocol,
                            format!("Cloud KMS answered with more than {MAX_RESPONSE} bytes"),
                        ));
                    }
                    push_zeroizing(&mut buf, &chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let kind = if e.is_timeout() {
                        ProviderErrorKind::Timeout
                    } else {
                        ProviderErrorKind::Unavailable
                    };
                    return Err((
                        kind,
                        format!("reading the Cloud KMS answer failed: {}", error_chain(&e)),
                    ));
                }
            }
        }
        // `String::from_utf8` takes the Vec without copying; on failure, take it back so it
        // is wiped too.
        match String::from_utf8(std::mem::take(&mut *buf)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Err((
                    ProviderErrorKind::Protocol,
                    "Cloud KMS answered with a body that is not UTF-8".to_owned(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroizing_appends_keep_every_byte() {
        let mut buf = Zeroizing::new(Vec::with_capacity(2));
        for chunk in [&b"ab"[..], b"cde", b"", b"fghijklmnop"] {
            push_zeroizing(&mut buf, chunk);
        }
        assert_eq!(buf.as_slice(), b"abcdefghijklmnop");
    }
}
