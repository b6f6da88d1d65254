//! The associated-data self-test run at connect for non-derived keys (see the crate
//! documentation).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sealbox_core::{DataKey, ProviderError, ProviderErrorKind};
use zeroize::Zeroizing;

use super::VaultTransit;
use super::key_provider::{Binding, TransitCall};

impl VaultTransit {
    /// For a non-derived key: encrypts a random probe with associated data A, then checks
    /// that decrypting it with associated data B fails and with A returns the probe. A server
    /// that decrypts under B ignores `associated_data`, so wrapped keys would not be bound to
    /// their context: connecting is refused. A token without `encrypt` or `decrypt` cannot run
    /// the check; it is skipped with a warning (so writer-only and reader-only tokens work).
    pub(super) async fn associated_data_self_test(&self) -> Result<(), ProviderError> {
        let probe = DataKey::generate()
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))?;
        let plaintext = Zeroizing::new(B64.encode(probe.expose_secret()));
        let ad_a = B64.encode(b"sealbox associated-data self-test: A");
        let ad_b = B64.encode(b"sealbox associated-data self-test: B");
        let encrypt = TransitCall::Encrypt {
            plaintext: &plaintext,
        };
        let encrypted = self
            .transit("self-test encrypt", encrypt, Binding::AssociatedData(&ad_a))
            .await;
        let ciphertext = match encrypted {
            Ok(ciphertext) => ciphertext,
            Err(e) if e.kind() == ProviderErrorKind::PermissionDenied => {
                tracing::warn!(
                    key_id = %self.key_id,
                    error = %e,
                    "cannot check that Transit enforces associated_data: the token may not encrypt with this key; skipping the self-test"
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let classify = |result: Result<Zeroizing<String>, ProviderError>| match result {
            Ok(opened) => Ok(if *opened == *plaintext {
                Probe::Opened
            } else {
                Probe::OpenedOther
            }),
            Err(e) => match e.kind() {
                ProviderErrorKind::InvalidWrappedKey => Ok(Probe::Rejected),
                ProviderErrorKind::PermissionDenied => Ok(Probe::Denied),
                _ => Err(e),
            },
        };
        let decrypt = TransitCall::Decrypt {
            ciphertext: &ciphertext,
        };
        let op = "self-test decrypt";
        let wrong = classify(
            self.transit(op, decrypt, Binding::AssociatedData(&ad_b))
                .await,
        )?;
        let right = classify(
            self.transit(op, decrypt, Binding::AssociatedData(&ad_a))
                .await,
        )?;
        match judge_associated_data(wrong, right) {
            AdVerdict::Enforced => Ok(()),
            AdVerdict::Ignored => Err(self.err(
                ProviderErrorKind::Misconfigured,
                "the server ignores associated_data: Transit decrypted a self-test probe under \
                 other associated data than it was encrypted with, so wrapped keys would not be \
                 bound to their encryption context; refusing this non-derived key (use a \
                 derived key, derived=true, or fix the server)",
            )),
            AdVerdict::Inconclusive => {
                tracing::warn!(
                    key_id = %self.key_id,
                    "cannot check that Transit enforces associated_data: the token may not decrypt with this key; skipping the self-test"
                );
                Ok(())
            }
            AdVerdict::Broken => Err(self.err(
                ProviderErrorKind::Protocol,
                "associated-data self-test: Transit did not return the probe when decrypting \
                 it with the associated data it was encrypted with",
            )),
        }
    }
}

/// What decrypting the associated-data self-test probe gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The probe came back.
    Opened,
    /// Something else came back.
    OpenedOther,
    /// Transit refused it (authentication failed).
    Rejected,
    /// The token may not decrypt.
    Denied,
}

/// The associated-data self-test's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdVerdict {
    /// Wrong associated data is refused, the right one opens the probe.
    Enforced,
    /// Wrong associated data opens the ciphertext: the server does not bind it.
    Ignored,
    /// The token may not decrypt: the check cannot run.
    Inconclusive,
    /// The right associated data does not give the probe back.
    Broken,
}

/// Judges the self-test from decrypting the probe with the wrong and the right associated data.
fn judge_associated_data(wrong: Probe, right: Probe) -> AdVerdict {
    match (wrong, right) {
        (Probe::Opened | Probe::OpenedOther, _) => AdVerdict::Ignored,
        (Probe::Denied, _) | (_, Probe::Denied) => AdVerdict::Inconclusive,
        (Probe::Rejected, Probe::Opened) => AdVerdict::Enforced,
        (Probe::Rejected, Probe::OpenedOther | Probe::Rejected) => AdVerdict::Broken,
    }
}

#[cfg(test)]
mod tests {
    use super::{AdVerdict, Probe, judge_associated_data};

    #[test]
    fn the_associated_data_self_test_refuses_a_server_that_ignores_it() {
        use Probe::*;
        // Decrypting under the wrong associated data must fail, whatever else happens.
        for right in [Opened, OpenedOther, Rejected, Denied] {
            assert_eq!(judge_associated_data(Opened, right), AdVerdict::Ignored);
            assert_eq!(
                judge_associated_data(OpenedOther, right),
                AdVerdict::Ignored
            );
        }
        assert_eq!(judge_associated_data(Rejected, Opened), AdVerdict::Enforced);
        // The right associated data must give the probe back.
        assert_eq!(judge_associated_data(Rejected, Rejected), AdVerdict::Broken);
        assert_eq!(
            judge_associated_data(Rejected, OpenedOther),
            AdVerdict::Broken
        );
        // Without decrypt permission the test cannot run.
        assert_eq!(
            judge_associated_data(Denied, Denied),
            AdVerdict::Inconclusive
        );
        assert_eq!(
            judge_associated_data(Denied, Opened),
            AdVerdict::Inconclusive
        );
        assert_eq!(
            judge_associated_data(Rejected, Denied),
            AdVerdict::Inconclusive
        );
    }
}
