//! Fixtures shared by the workspace's tests: the usual context, deterministic test bytes, a
//! provider wrapper that counts calls and injects outages (or holds unwraps back), captured
//! logs, and the checks every network provider's plain-HTTP rule runs.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sealbox_core::transport::Transport;
use sealbox_core::{
    DataKey, EncryptionContext, GeneratedKey, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};
use sealbox_keyring::{Clock, Keyring, LeaseLimits};

/// `{namespace: <namespace>}`, the context the Temporal codec and the key policy use.
pub fn ctx(namespace: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("namespace", namespace)
        .expect("valid context")
}

/// Deterministic pseudo-random bytes (xorshift), so test inputs are not all zeros.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Lease limits that end a lease after `max_payloads` payloads (the other limits default).
pub fn max_payloads(max_payloads: u64) -> LeaseLimits {
    LeaseLimits {
        max_payloads,
        ..LeaseLimits::default()
    }
}

/// A key-ring sealing with `provider` under `limits`, on `clock` when given (else the system
/// clock).
pub fn leasing_keyring(
    provider: Arc<dyn KeyProvider>,
    limits: LeaseLimits,
    clock: Option<Arc<dyn Clock>>,
) -> Keyring {
    let mut builder = Keyring::builder(provider).lease_limits(limits);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.build().expect("keyring")
}

/// A data key `provider` generates under `sealed`, and the error with which it refuses to
/// unwrap it under `opened` (`why` it must refuse).
pub async fn unwrap_refused(
    provider: &dyn KeyProvider,
    sealed: &EncryptionContext,
    opened: &EncryptionContext,
    why: &str,
) -> (GeneratedKey, ProviderError) {
    let generated = provider.generate_data_key(sealed).await.expect("generate");
    let err = provider
        .unwrap(&generated.wrapped, opened)
        .await
        .expect_err(why);
    (generated, err)
}

/// The distinct wrapped data keys of `envelopes` (a lease shares its key among its payloads).
pub fn wrapped_keys(envelopes: &[Vec<u8>]) -> HashSet<Vec<u8>> {
    envelopes
        .iter()
        .map(|e| {
            sealbox_core::inspect(e)
                .expect("header")
                .wrapped_key
                .ciphertext()
                .to_vec()
        })
        .collect()
}

/// A provider in front of another that counts calls and can fail a number of calls
/// with a transient error.
#[derive(Debug)]
pub struct Instrumented<P: ?Sized> {
    /// The provider that does the work.
    pub inner: Arc<P>,
    /// `generate_data_key` calls so far.
    pub generate_calls: AtomicUsize,
    /// `unwrap` calls so far (a batch counts each item).
    pub unwrap_calls: AtomicUsize,
    /// How many of the next calls fail with an `Unavailable` error.
    pub fail_next: AtomicUsize,
    /// When set, every `unwrap_many` waits at this barrier first (to prove that batches for
    /// different KEKs run concurrently: sequential batches would never meet).
    pub batch_gate: Option<Arc<tokio::sync::Barrier>>,
    /// When set, every `unwrap` (counted first) waits for a permit of this semaphore and holds
    /// it until the inner call returns (to hold unwraps back while a test piles up callers).
    pub unwrap_gate: Option<Arc<tokio::sync::Semaphore>>,
    /// How long every `generate_data_key` takes (a slow KMS), after it is counted.
    pub generate_latency: Duration,
}

impl<P: KeyProvider + ?Sized> Instrumented<P> {
    /// Counts and forwards every call to `inner`.
    pub fn new(inner: Arc<P>) -> Self {
        Self {
            inner,
            generate_calls: AtomicUsize::new(0),
            unwrap_calls: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            batch_gate: None,
            unwrap_gate: None,
            generate_latency: Duration::ZERO,
        }
    }

    fn maybe_fail(&self) -> Result<(), ProviderError> {
        let failed = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(ProviderError::new(
                self.provider_id(),
                self.key_id(),
                ProviderErrorKind::Unavailable,
                "injected outage",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl<P: KeyProvider + ?Sized> KeyProvider for Instrumented<P> {
    fn provider_id(&self) -> &str {
        self.inner.provider_id()
    }

    fn key_id(&self) -> &str {
        self.inner.key_id()
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, ProviderError> {
        self.generate_calls.fetch_add(1, Ordering::SeqCst);
        if !self.generate_latency.is_zero() {
            tokio::time::sleep(self.generate_latency).await;
        }
        self.maybe_fail()?;
        self.inner.generate_data_key(context).await
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        self.maybe_fail()?;
        self.inner.wrap(data_key, context).await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        self.unwrap_calls.fetch_add(1, Ordering::SeqCst);
        let _permit = match &self.unwrap_gate {
            Some(gate) => Some(gate.acquire().await.expect("unwrap gate")),
            None => None,
        };
        self.maybe_fail()?;
        self.inner.unwrap(wrapped, context).await
    }

    async fn unwrap_many(
        &self,
        items: &[(&WrappedKey, &EncryptionContext)],
    ) -> Vec<Result<DataKey, ProviderError>> {
        if let Some(gate) = &self.batch_gate {
            gate.wait().await;
        }
        let mut out = Vec::with_capacity(items.len());
        for (wrapped, ctx) in items {
            out.push(self.unwrap(wrapped, ctx).await);
        }
        out
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        self.inner.describe().await
    }
}

/// Checks that `err` is of one of `kinds`.
pub fn assert_kind_in(err: &ProviderError, kinds: &[ProviderErrorKind]) {
    assert!(kinds.contains(&err.kind()), "{err}: not one of {kinds:?}");
}

/// Captures what `tracing` logs (WARN and above) while its guard lives, on the current
/// thread: for tests that check what is (and is not) logged.
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Starts capturing; capture ends when the guard drops.
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    /// Captures, for the rest of the process, every thread's logs that pass `filter` (an
    /// `EnvFilter` directive such as `info,sealbox_server=trace`): for tests whose servers
    /// log from runtime worker threads. Panics if a global subscriber is already set.
    pub fn capture_globally(filter: &str) -> Self {
        let logs = Logs::default();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(logs.clone())
            .with_ansi(false)
            .init();
        logs
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// What the plain-HTTP rule makes of an endpoint in [`ENDPOINTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `https://`: accepted.
    Tls,
    /// `http://` to a loopback host: accepted without the opt-in.
    Loopback,
    /// `http://` to another host: refused, unless opted in.
    Remote,
    /// Another scheme, or not a URL: refused, even when opted in.
    Invalid,
    /// A user name and password in the URL: refused without repeating the password.
    Credentials,
}

/// The endpoints [`assert_plain_http_rule`] checks.
const ENDPOINTS: &[(Expect, &str)] = &[
    (Expect::Tls, "https://kms.eu-west-1.amazonaws.com"),
    (
        Expect::Tls,
        "https://vpce-1.kms.eu-west-1.vpce.amazonaws.com:443/",
    ),
    (
        Expect::Tls,
        "https://cloudkms.europe-west1.rep.googleapis.com/",
    ),
    (Expect::Tls, "https://cloudkms.googleapis.com"),
    (Expect::Tls, "https://127.0.0.1:4566"),
    (Expect::Loopback, "http://127.0.0.1:5000"),
    (Expect::Loopback, "http://127.8.9.10"),
    (Expect::Loopback, "http://127.255.0.1"),
    (Expect::Loopback, "http://localhost:4566/"),
    (Expect::Loopback, "http://LOCALHOST"),
    (Expect::Loopback, "http://[::1]:5000"),
    (Expect::Loopback, "http://[::1]:8080"),
    (Expect::Loopback, "http://[::ffff:127.0.0.1]:5000"),
    (Expect::Loopback, "http://[::ffff:127.0.0.1]"),
    (Expect::Remote, "http://kms.example.com"),
    (Expect::Remote, "http://cloudkms.googleapis.com"),
    (Expect::Remote, "http://10.0.0.5:4566"),
    (Expect::Remote, "http://192.168.1.10:8080"),
    (Expect::Remote, "http://0.0.0.0:4566"),
    (Expect::Remote, "http://0.0.0.0:8080"),
    (Expect::Remote, "http://[::]:4566"),
    (Expect::Remote, "http://localhost.example.com"),
    (Expect::Remote, "http://localhost.evil.example"),
    (Expect::Remote, "http://127.0.0.1.nip.io"),
    (Expect::Invalid, "kms.example.com"),
    (Expect::Invalid, "cloudkms.googleapis.com"),
    (Expect::Invalid, "ftp://kms.example.com"),
    (Expect::Invalid, "ftp://example.com"),
    (Expect::Invalid, "not a url"),
    (Expect::Invalid, ""),
    (Expect::Credentials, "https://user:hunter2@kms.example.com"),
    (
        Expect::Credentials,
        "https://u:hunter2@cloudkms.googleapis.com",
    ),
];

/// Checks an endpoint check of a network provider (`check(endpoint, allow_http)`, see
/// `sealbox_core::transport::check_endpoint`) against the plain-HTTP rule: `https://` is
/// accepted; `http://` on a loopback host is accepted without the opt-in; `http://` to any
/// other host is refused with a message naming the host and holding every one of `refusal`
/// (the provider's wording and opt-in), and accepted with the opt-in; other schemes,
/// unparsable URLs and credentials in the URL (never repeated) are refused.
pub fn assert_plain_http_rule(
    check: impl Fn(&str, bool) -> Result<Transport, String>,
    refusal: &[&str],
) {
    for &(expect, endpoint) in ENDPOINTS {
        match expect {
            Expect::Tls => assert_eq!(check(endpoint, false), Ok(Transport::Tls), "{endpoint}"),
            Expect::Loopback => assert_eq!(
                check(endpoint, false),
                Ok(Transport::LoopbackHttp),
                "{endpoint}"
            ),
            Expect::Remote => {
                let e = check(endpoint, false).expect_err(endpoint);
                assert!(
                    e.contains(endpoint.trim_start_matches("http://"))
                        && refusal.iter().all(|part| e.contains(part)),
                    "{e}"
                );
                let opted_in = check(endpoint, true);
                assert_eq!(opted_in, Ok(Transport::OptedInHttp), "{endpoint}");
            }
            Expect::Invalid => {
                let e = check(endpoint, true).expect_err(endpoint);
                assert!(e.contains("https://") || e.contains("valid URL"), "{e}");
            }
            Expect::Credentials => {
                let e = check(endpoint, false).expect_err(endpoint);
                assert!(
                    e.contains("user name or password") && !e.contains("hunter2"),
                    "{e}"
                );
            }
        }
    }
}

/// Checks a provider's refusal of the plain-HTTP endpoint `remote`: a `Misconfigured` error
/// naming `remote` and holding every one of `refusal` (the provider's wording and opt-in).
pub fn assert_plain_http_refused(err: &ProviderError, remote: &str, refusal: &[&str]) {
    assert_eq!(err.kind(), ProviderErrorKind::Misconfigured, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(remote) && refusal.iter().all(|part| text.contains(part)),
        "{text}"
    );
}

/// Checks a provider's plain-HTTP opt-in end to end: connecting over loopback HTTP
/// (`loopback`) succeeds and logs nothing; connecting to `remote` with the opt-in
/// (`opted_in`) succeeds and warns that it is INSECURE, naming `remote`; and what is sealed
/// through the opted-in provider opens with `reader` (the same KEK, over loopback).
pub async fn assert_plain_http_opt_in_works<L, O>(
    loopback: impl Future<Output = Result<L, ProviderError>>,
    opted_in: impl Future<Output = Result<O, ProviderError>>,
    reader: Arc<dyn KeyProvider>,
    remote: &str,
) where
    L: KeyProvider,
    O: KeyProvider + 'static,
{
    let (logs, _guard) = Logs::start();
    loopback.await.expect("loopback http is accepted");
    assert!(!logs.text().contains("INSECURE"), "{}", logs.text());
    let opted_in = opted_in.await.expect("http with allow_http");
    let keyring = Keyring::builder(Arc::new(opted_in))
        .build()
        .expect("keyring");
    let env = keyring.seal(&ctx("a"), b"over http").await.expect("seal");
    let reader = Keyring::builder(reader).build().expect("keyring");
    assert_eq!(
        reader.open(&ctx("a"), &env).await.expect("open"),
        b"over http"
    );
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("INSECURE") && text.contains(remote),
        "{text}"
    );
}
