//! Fixtures shared by the workspace's tests: the usual context, deterministic test bytes,
//! and a provider wrapper that counts calls and injects outages.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sealbox_core::{
    DataKey, EncryptionContext, GeneratedKey, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};

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

/// A provider in front of another that counts calls and can fail a number of calls
/// with a transient error.
#[derive(Debug)]
pub struct Instrumented<P> {
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
}

impl<P: KeyProvider> Instrumented<P> {
    /// Counts and forwards every call to `inner`.
    pub fn new(inner: Arc<P>) -> Self {
        Self {
            inner,
            generate_calls: AtomicUsize::new(0),
            unwrap_calls: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            batch_gate: None,
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
impl<P: KeyProvider> KeyProvider for Instrumented<P> {
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
