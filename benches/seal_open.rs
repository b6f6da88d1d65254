//! Seal and open throughput beside raw AES-256-GCM on the same input, in the same run.
//!
//! ```sh
//! cargo bench --bench seal_open
//! ```
//!
//! For each size (1 KiB, 64 KiB, 1 MiB) criterion measures three functions:
//! - `raw_aes256gcm`: the baseline — copy the input into a fresh buffer and encrypt it with
//!   AES-256-GCM under a fixed key (what any envelope scheme must at least do);
//! - `seal`: `Keyring::seal` with a warm lease (salt, HKDF derivation, header, AEAD);
//! - `open`: `Keyring::open` with a warm unwrap cache (parse, commitment, AEAD).
//!
//! After criterion's own report, a table prints each function's mean throughput and its
//! ratio to the raw baseline, computed from the same samples criterion took.
#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm_baseline::seal_raw;
use criterion::{BenchmarkId, Criterion, Throughput};
use sealbox::{EncryptionContext, Keyring, LocalKek};

/// The baseline, kept apart so it is obviously the plain primitive.
mod aes_gcm_baseline {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Aes256Gcm, Nonce};

    pub(crate) fn seal_raw(cipher: &Aes256Gcm, nonce: &[u8; 12], input: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(input.len() + 16);
        buf.extend_from_slice(input);
        let tag = cipher
            .encrypt_inout_detached(&Nonce::from(*nonce), b"", buf.as_mut_slice().into())
            .unwrap();
        buf.extend_from_slice(&tag);
        buf
    }

    pub(crate) fn cipher() -> Aes256Gcm {
        Aes256Gcm::new(&[0x42u8; 32].into())
    }
}

const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

type Totals = Arc<Mutex<BTreeMap<(usize, &'static str), (u64, Duration)>>>;

fn timed(
    totals: &Totals,
    size: usize,
    name: &'static str,
    iters: u64,
    mut f: impl FnMut(),
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let elapsed = start.elapsed();
    let mut t = totals.lock().unwrap();
    let e = t.entry((size, name)).or_default();
    e.0 += iters;
    e.1 += elapsed;
    elapsed
}

fn bench(c: &mut Criterion, totals: &Totals) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let kek = Arc::new(LocalKek::generate("bench").unwrap());
    let keyring = Keyring::builder(kek).build().unwrap();
    let ctx = EncryptionContext::new().with("namespace", "bench").unwrap();
    let cipher = aes_gcm_baseline::cipher();
    let nonce = [7u8; 12];

    let mut group = c.benchmark_group("seal_open");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    for (size, label) in SIZES {
        let input: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let envelope = rt.block_on(keyring.seal(&ctx, &input)).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("raw_aes256gcm", label),
            &input,
            |b, input| {
                b.iter_custom(|iters| {
                    timed(totals, size, "raw_aes256gcm", iters, || {
                        black_box(seal_raw(&cipher, &nonce, black_box(input)));
                    })
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("seal", label), &input, |b, input| {
            b.iter_custom(|iters| {
                timed(totals, size, "seal", iters, || {
                    black_box(rt.block_on(keyring.seal(&ctx, black_box(input))).unwrap());
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("open", label), &envelope, |b, envelope| {
            b.iter_custom(|iters| {
                timed(totals, size, "open", iters, || {
                    black_box(
                        rt.block_on(keyring.open(&ctx, black_box(envelope)))
                            .unwrap(),
                    );
                })
            })
        });
    }
    group.finish();
    let stats = keyring.stats();
    println!(
        "\nKMS calls during the whole run: {} (generate {}, unwrap {}) for {} seals and {} opens",
        stats.kms_calls(),
        stats.generate_calls,
        stats.unwrap_calls,
        stats.seals,
        stats.opens
    );
}

fn report(totals: &Totals) {
    let t = totals.lock().unwrap();
    println!(
        "\n{:<8} {:<14} {:>12} {:>12} {:>10}",
        "size", "function", "ns/op", "MiB/s", "vs raw"
    );
    for (size, label) in SIZES {
        let Some(&(raw_n, raw_d)) = t.get(&(size, "raw_aes256gcm")) else {
            continue;
        };
        let raw_ns = raw_d.as_nanos() as f64 / raw_n as f64;
        for name in ["raw_aes256gcm", "seal", "open"] {
            let Some(&(n, d)) = t.get(&(size, name)) else {
                continue;
            };
            let ns = d.as_nanos() as f64 / n as f64;
            let mib_s = size as f64 / (ns / 1e9) / (1 << 20) as f64;
            println!(
                "{label:<8} {name:<14} {ns:>12.0} {mib_s:>12.1} {:>9.2}x",
                raw_ns / ns
            );
        }
    }
    println!(
        "(`vs raw` = raw AES-256-GCM time / function time: 1.00x is parity, 0.50x is half as fast)"
    );
}

fn main() {
    let totals: Totals = Arc::default();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &totals);
    c.final_summary();
    report(&totals);
}
