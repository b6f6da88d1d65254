//! The codec server's request decoder: `Payloads` protobuf JSON → payloads
//! (`sealbox_temporal::json::parse_payloads`), on arbitrary bytes.
//!
//! For every input that parses, the canonical rendering (`render_payloads`) parses back to
//! equal payloads, and rendering is a fixed point (render ∘ parse ∘ render = render).
//! Errors never echo payload bytes, so they stay short: bounded here by the input length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealbox_temporal::json::{parse_payloads, render_payloads};

fuzz_target!(|data: &[u8]| {
    match parse_payloads(data) {
        Ok(payloads) => {
            let rendered = render_payloads(&payloads);
            let again = parse_payloads(&rendered).unwrap_or_else(|e| {
                panic!(
                    "rendered JSON does not parse: {e}\n{}",
                    String::from_utf8_lossy(&rendered)
                )
            });
            assert_eq!(again, payloads, "render → parse changed the payloads");
            assert_eq!(
                render_payloads(&again),
                rendered,
                "rendering is not canonical"
            );
        }
        Err(e) => {
            assert!(!e.is_empty());
            // The error names a field (with indices and metadata keys, which come from the
            // input) but never payload data: it cannot be much longer than the input.
            assert!(
                e.len() <= data.len() + 256,
                "error of {} bytes for {} bytes of input: {e}",
                e.len(),
                data.len()
            );
        }
    }
});
