//! Batch unwrap: one `decrypt` request with `batch_input` for many wrapped keys.

use sealbox_core::{DataKey, EncryptionContext, ProviderError, ProviderErrorKind, WrappedKey};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::VaultTransit;
use super::key_provider::context_b64;
use crate::ContextBinding;
use crate::error::map_error;
use crate::session::JsonRequest;

impl VaultTransit {
    /// One `decrypt` request with `batch_input` for all items; per-item failures (wrong
    /// context, corrupted key) fail only their item.
    pub(super) async fn unwrap_batch(
        &self,
        items: &[(&WrappedKey, &EncryptionContext)],
    ) -> Vec<Result<DataKey, ProviderError>> {
        let field = match self.binding {
            ContextBinding::Derived => "context",
            ContextBinding::AssociatedData => "associated_data",
        };
        let mut out: Vec<Option<Result<DataKey, ProviderError>>> = Vec::with_capacity(items.len());
        let mut batch = Vec::new();
        let mut slots = Vec::new();
        for (i, (wrapped, context)) in items.iter().enumerate() {
            match self.ciphertext_of(wrapped) {
                Ok(ct) => {
                    batch
                        .push(serde_json::json!({ "ciphertext": ct, field: context_b64(context) }));
                    slots.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        if !batch.is_empty() {
            let body =
                serde_json::json!({ "batch_input": batch, "partial_failure_response_code": 207 });
            // `POST {mount}/decrypt/{name}` with `batch_input`: many unwraps in one HTTP
            // request. Partial failures are answered with 207 so the per-item results can be read.
            let path = format!("{}/decrypt/{}", self.mount, self.key);
            let body = Zeroizing::new(body.to_string().into_bytes());
            let response = self
                .session
                .call("batch decrypt", |lease| {
                    let endpoint: JsonRequest<BatchDecryptResponse> =
                        JsonRequest::post(path.clone(), Some(body.clone()));
                    async move { vaultrs::api::exec_with_result(&lease.client.0, endpoint).await }
                })
                .await;
            let results: Vec<Result<DataKey, ProviderError>> = match response {
                Ok(resp) if resp.batch_results.len() == slots.len() => resp
                    .batch_results
                    .into_iter()
                    .map(|item| {
                        let plaintext = item.plaintext.map(Zeroizing::new);
                        match (plaintext, item.error) {
                            (_, Some(e)) if !e.is_empty() => Err(map_error(
                                &self.key_id,
                                "batch decrypt",
                                ClientError::APIError {
                                    code: 400,
                                    errors: vec![e],
                                },
                            )),
                            (Some(p), _) => self.decode_key(&p),
                            (None, _) => Err(self.err(
                                ProviderErrorKind::Protocol,
                                "batch decrypt item has no plaintext",
                            )),
                        }
                    })
                    .collect(),
                Ok(resp) => {
                    let e = self.err(
                        ProviderErrorKind::Protocol,
                        format!(
                            "batch decrypt returned {} results for {} items",
                            resp.batch_results.len(),
                            slots.len()
                        ),
                    );
                    slots.iter().map(|_| Err(e.clone())).collect()
                }
                Err(e) => slots.iter().map(|_| Err(e.clone())).collect(),
            };
            for (slot, result) in slots.into_iter().zip(results) {
                out[slot] = Some(result);
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(self.err(ProviderErrorKind::Protocol, "batch item without result"))
                })
            })
            .collect()
    }
}

#[derive(serde::Deserialize)]
struct BatchDecryptResponse {
    batch_results: Vec<BatchItem>,
}

#[derive(serde::Deserialize)]
struct BatchItem {
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    error: Option<String>,
}
