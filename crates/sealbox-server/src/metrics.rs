//! Prometheus metrics.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use sealbox_policy::PolicyKeyrings;

pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    failures: IntCounterVec,
    payloads: IntCounterVec,
    plaintext: IntCounterVec,
    latency: HistogramVec,
}

/// A counter family with a static (known-valid) definition.
fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let requests = counter(
            "sealbox_codec_requests_total",
            "Codec requests by operation and HTTP status.",
            &["operation", "status"],
        );
        let failures = counter(
            "sealbox_codec_failures_total",
            "Failed codec requests by reason.",
            &["operation", "reason"],
        );
        let payloads = counter(
            "sealbox_codec_payloads_total",
            "Payloads received by operation.",
            &["operation"],
        );
        let plaintext = counter(
            "sealbox_codec_plaintext_payloads_total",
            "Payloads that reached /decode unencrypted (not null, not an external-storage \
             reference): in a namespace that requires encryption, a possible downgrade.",
            &["operation"],
        );
        let latency = HistogramVec::new(
            HistogramOpts::new("sealbox_codec_request_seconds", "Codec request latency.").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            ),
            &["operation"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        for m in [&requests, &failures, &payloads, &plaintext] {
            let _ = registry.register(Box::new(m.clone()));
        }
        let _ = registry.register(Box::new(latency.clone()));
        Self {
            registry,
            requests,
            failures,
            payloads,
            plaintext,
            latency,
        }
    }

    pub(crate) fn observe(
        &self,
        op: &str,
        status: u16,
        reason: &str,
        payloads: usize,
        plaintext: usize,
        took: Duration,
    ) {
        if plaintext > 0 {
            self.plaintext
                .with_label_values(&[op])
                .inc_by(plaintext as u64);
        }
        self.requests
            .with_label_values(&[op, &status.to_string()])
            .inc();
        if status >= 400 {
            self.failures.with_label_values(&[op, reason]).inc();
        }
        self.payloads
            .with_label_values(&[op])
            .inc_by(payloads as u64);
        self.latency
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }

    /// The text exposition, plus the key-rings' counters (KMS calls, unwrap cache).
    pub(crate) fn render(&self, policy: &PolicyKeyrings) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        let mut sum = sealbox_keyring::KeyStats::default();
        for k in policy.keyrings() {
            sum += k.stats();
        }
        let (kms, unwraps) = (sum.kms_calls(), sum.unwrap_calls + sum.batch_unwrapped_keys);
        let hits = sum.opens.saturating_sub(unwraps);
        for (name, help, v) in [
            ("sealbox_kms_calls_total", "Calls to KMS providers.", kms),
            (
                "sealbox_kms_failed_calls_total",
                "Failed calls to KMS providers.",
                sum.failed_calls,
            ),
            (
                "sealbox_unwrap_cache_misses_total",
                "Envelope opens that needed a KMS unwrap.",
                unwraps,
            ),
            (
                "sealbox_unwrap_cache_hits_total",
                "Envelope opens served from the unwrap cache.",
                hits,
            ),
            (
                "sealbox_envelopes_opened_total",
                "Envelopes opened.",
                sum.opens,
            ),
            (
                "sealbox_envelopes_sealed_total",
                "Envelopes sealed.",
                sum.seals,
            ),
            (
                "sealbox_data_key_leases_total",
                "Data-key leases created.",
                sum.leases_created,
            ),
            (
                "sealbox_data_key_leases_renewed_ahead_total",
                "Data-key leases replaced in the background before they were spent.",
                sum.leases_renewed_ahead,
            ),
            (
                "sealbox_seal_kms_waits_total",
                "Seals that waited for a KMS call (no usable lease: first use of a context, or a lease spent while renewal failed).",
                sum.seal_waits,
            ),
            (
                "sealbox_unwrap_refusals_cached_total",
                "Opens refused from the negative cache (a wrapped key the KMS had just refused).",
                sum.negative_cache_hits,
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        text
    }
}
