//! The key-policy file validator on arbitrary UTF-8 (non-UTF-8 inputs are skipped: the
//! loader reads the file as a `String` first).
//!
//! Built without the `aws`, `gcp` and `vault` features, so only the `local://` KEK scheme is
//! compiled in (other schemes' URIs are "unknown provider" errors and their settings tables
//! "unknown table" errors).
//!
//! Invariants checked:
//! - every error names the file given and a 1-based line and column inside the text;
//! - for a valid file, every KEK URI it names is canonical: parsing its text again gives the
//!   same URI, the scheme that parsed it is found, and `uri_for` of the header KEK it
//!   displays as finds it;
//! - namespace lookups (`policy_for`, `rule_for`) and `context_for` never panic, and a rule's
//!   own literal pattern matches itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealbox_core::KekRef;
use sealbox_policy::{PolicyConfig, describe_kek, parse_kek};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PolicyConfig::from_toml(text, "fuzz") {
        Err(errors) => {
            assert!(
                !errors.0.is_empty(),
                "an invalid policy reports at least one error"
            );
            let lines = text.split('\n').count();
            for e in &errors.0 {
                assert_eq!(e.file, "fuzz");
                assert!(
                    e.line >= 1 && e.line <= lines,
                    "line {} of {lines}: {e}",
                    e.line
                );
                assert!(e.column >= 1, "{e}");
                let _ = e.to_string();
            }
        }
        Ok(config) => {
            for kek in config.keks() {
                let again = parse_kek(kek.as_str())
                    .unwrap_or_else(|e| panic!("canonical URI `{kek}` does not parse: {e}"));
                assert_eq!(&again, kek);
                assert_eq!(again.provider_id(), kek.provider_id());
                assert!(config.scheme_of(kek).is_some(), "no scheme for `{kek}`");
                let _ = describe_kek(kek);
                // The KEK an envelope sealed under it names is found again by `uri_for`.
                let (scheme, _) = config.scheme_of(kek).expect("checked");
                if let Some(id) = scheme.key_id(kek)
                    && let Ok(header_kek) = KekRef::new(kek.provider_id(), id.as_str())
                {
                    let found = config
                        .uri_for(&header_kek)
                        .unwrap_or_else(|| panic!("uri_for({header_kek}) misses `{kek}`"));
                    assert_eq!(scheme.key_id(found).as_deref(), Some(id.as_str()));
                }
            }
            for ns in ["fuzz", "payments", "", "a-b.c_d"] {
                let policy = config.policy_for(ns);
                let _ = policy.context_for(ns);
            }
            for rule in &config.rules {
                let literal = !rule
                    .pattern
                    .chars()
                    .any(|c| matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\'));
                if literal {
                    assert!(
                        rule.matches(&rule.pattern),
                        "literal rule `{}`",
                        rule.pattern
                    );
                }
                let _ = config.policy_for(&rule.pattern);
                let _ = rule.policy.context_for(&rule.pattern);
            }
            let _ = format!("{config:?}");
        }
    }
});
