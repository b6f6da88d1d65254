//! The KEK schemes this build knows — the one table a new KMS provider is added to — and
//! the dispatch over it: parse a KEK URI, connect it, print the URI of a header's KEK.

use sealbox_core::{KekRef, KekScheme, KekUri};

/// Every scheme compiled in (cargo features `aws`, `vault`, `gcp`). Adding a KMS: one line
/// here, its crate, its docs and its test server (`docs/providers.md`).
static SCHEMES: &[&dyn KekScheme] = &[
    &sealbox_local::LocalScheme,
    #[cfg(feature = "aws")]
    &sealbox_aws::AwsKmsScheme,
    #[cfg(feature = "gcp")]
    &sealbox_gcp::GcpKmsScheme,
    #[cfg(feature = "vault")]
    &sealbox_vault::VaultScheme,
];

/// The schemes compiled into this build.
pub fn schemes() -> &'static [&'static dyn KekScheme] {
    SCHEMES
}

/// The scheme that parses URIs of `uri_scheme` (`vault+http`).
pub fn scheme_for_uri(uri_scheme: &str) -> Option<&'static dyn KekScheme> {
    SCHEMES
        .iter()
        .copied()
        .find(|s| s.uri_schemes().contains(&uri_scheme))
}

/// The scheme whose envelopes carry `provider_id`.
pub fn scheme_for_provider(provider_id: &str) -> Option<&'static dyn KekScheme> {
    SCHEMES
        .iter()
        .copied()
        .find(|s| s.provider_id() == provider_id)
}

/// Parses a KEK URI with the scheme it names; the error says what is wrong and shows the
/// expected form, or lists the schemes this build knows.
pub fn parse_kek(uri: &str) -> Result<KekUri, String> {
    let (name, _) = uri.split_once("://").ok_or_else(|| {
        format!("`{uri}` is not a KEK URI (expected SCHEME://…, e.g. awskms:///arn:…)")
    })?;
    match scheme_for_uri(name) {
        Some(scheme) => scheme.parse(uri),
        None => {
            let known: Vec<&str> = SCHEMES
                .iter()
                .flat_map(|s| s.uri_schemes().iter().copied())
                .collect();
            Err(format!(
                "unknown KEK provider `{name}` in `{uri}` (this build knows: {}; other providers \
                 need their cargo feature)",
                known.join(", ")
            ))
        }
    }
}

/// The URI naming the KEK an envelope header names (host-less where the URI has a host,
/// e.g. `vault:///transit/keys/k`); `PROVIDER:KEY-ID` for a provider this build lacks.
pub fn display_kek(kek: &KekRef) -> String {
    match scheme_for_provider(kek.provider()) {
        Some(scheme) => scheme.display(kek),
        None => format!("{}:{}", kek.provider(), kek.key_id()),
    }
}

/// Where `kek` lives, in words (for `config check`).
pub fn describe_kek(kek: &KekUri) -> String {
    match scheme_for_uri(kek.scheme()) {
        Some(scheme) => scheme.describe(kek),
        None => kek.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(feature = "aws", feature = "gcp", feature = "vault"))]
    fn every_compiled_scheme_round_trips_and_displays_headers() {
        for uri in [
            "local:///dev",
            "local:///old?file=/etc/sealbox/old.kek",
            "local:///ci?env=CI_KEK",
            "awskms:///arn:aws:kms:eu-west-1:111122223333:key/abc?region=eu-west-1",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "vault://vault.example:8200/transit/keys/payments?namespace=team-a",
            "vault+http://127.0.0.1:8200/kms/keys/dev",
        ] {
            let parsed = parse_kek(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(parsed.to_string(), uri);
            assert_eq!(parse_kek(&parsed.to_string()), Ok(parsed.clone()));
            // A header's KEK prints as a URI that parses back to the same key ID.
            let scheme = scheme_for_uri(parsed.scheme()).expect("compiled in");
            let key_id = scheme.key_id(&parsed).expect("known from the URI");
            let kek = KekRef::new(parsed.provider_id(), &key_id).expect("valid");
            let shown = parse_kek(&display_kek(&kek)).expect("display parses");
            assert_eq!(scheme.key_id(&shown), Some(key_id), "{uri}");
        }
        let other = KekRef::new("azure-kv", "k1").expect("valid");
        assert_eq!(display_kek(&other), "azure-kv:k1");
    }

    #[test]
    fn unknown_schemes_are_named() {
        for (uri, want) in [
            ("kms://x", "unknown KEK provider `kms`"),
            ("no-scheme", "is not a KEK URI"),
        ] {
            let err = parse_kek(uri).expect_err(uri);
            assert!(err.contains(want), "{uri}: {err}");
        }
    }
}
