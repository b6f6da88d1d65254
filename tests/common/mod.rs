//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sealbox::core::{GeneratedKey, KeyDescription};
use sealbox::{
    DataKey, EncryptionContext, KeyProvider, LocalKek, ProviderError, ProviderErrorKind, WrappedKey,
};

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

/// A provider in front of a [`LocalKek`] that counts calls and can fail a number of calls
/// with a transient error.
#[derive(Debug)]
pub struct Instrumented {
    pub inner: Arc<LocalKek>,
    pub generate_calls: AtomicUsize,
    pub unwrap_calls: AtomicUsize,
    pub fail_next: AtomicUsize,
    /// When set, every `unwrap_many` waits at this barrier first (to prove that batches for
    /// different KEKs run concurrently: sequential batches would never meet).
    pub batch_gate: Option<Arc<tokio::sync::Barrier>>,
}

impl Instrumented {
    pub fn new(inner: Arc<LocalKek>) -> Self {
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
impl KeyProvider for Instrumented {
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
