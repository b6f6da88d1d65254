//! Sealbox performance harness (issue #16). Run through `scripts/perf.sh`; see perf/README.md
//! for what every figure means.
//!
//! ```text
//! sealbox-perf run [--out DIR] [--quick]        every section; tables on stdout, files in DIR
//! sealbox-perf only 2|3|4|5 [--out DIR] [--quick] one section alone (section<N>.md or codec_server.md, its CSV)
//! sealbox-perf codec [--out DIR] [--quick]      = only 3
//! sealbox-perf codec-load --port P [...]         section 3's /decode load against a running server
//! sealbox-perf mem OP BYTES                      (internal) one peak-memory child process
//! ```

mod alloc;
mod codec;
mod esdk;
mod fmt;
mod kms;
mod measure;
mod mem;
mod peers;
mod plot;
mod worker;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hkdf::Hkdf;
use sealbox_core::crypto::{COMMITMENT_LABEL, PAYLOAD_KEY_LABEL, check_context};
use sealbox_core::{
    DataKey, EncryptionContext, KeyProvider, Suite, WrappedKey, inspect, open_envelope, parse,
    seal_with_data_key,
};
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;
use sha2::Sha256;

use fmt::{Table, int, ns, ratio, size_label};
use measure::{Case, Config, Stats, measure};
use peers::{AwsLc, RawAead, Ring, RustCrypto, counter_nonce};

const SECTION1_SIZES: [usize; 3] = [1 << 10, 64 << 10, 1 << 20];
const CURVE_SIZES: [usize; 9] = [
    64,
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
];
const MEM_SIZE: usize = 4 << 20;

const RING: &str = "ring";
const AWS_LC: &str = "aws-lc-rs";
const RUSTCRYPTO: &str = "RustCrypto aes-gcm";
const RAW: [&str; 3] = [RING, AWS_LC, RUSTCRYPTO];
const SEALBOX: &str = "Sealbox Keyring";
const MEMCPY: &str = "memcpy only (reference)";
const INPLACE: &str = "ring in place, no copy (reference)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Seal,
    Open,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Seal => "seal",
            Op::Open => "open",
        }
    }
}

/// One measured (size, operation, implementation).
struct Cell {
    size: usize,
    op: Op,
    name: &'static str,
    stats: Stats,
}

/// The warm key-ring every Sealbox measurement uses.
struct Fixture {
    rt: tokio::runtime::Runtime,
    kek: Arc<LocalKek>,
    /// Seals (its lease is created by the first seal and reused).
    writer: Keyring,
    /// Opens what `writer` sealed, through its unwrap cache (warmed by the first open), as
    /// a decoder in another process would.
    reader: Keyring,
    ctx: EncryptionContext,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        // Key ID "dev", as the local provider's development default.
        let kek = Arc::new(LocalKek::generate("dev").expect("local KEK"));
        let writer = Keyring::builder(kek.clone()).build().expect("key-ring");
        let reader = Keyring::builder(kek.clone()).build().expect("key-ring");
        let ctx = EncryptionContext::new()
            .with("namespace", "default")
            .expect("context");
        let fx = Self {
            rt,
            kek,
            writer,
            reader,
            ctx,
        };
        let env = fx.seal(b"warm-up");
        assert_eq!(fx.open(&env), b"warm-up");
        fx
    }

    fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        self.rt
            .block_on(self.writer.seal(&self.ctx, plaintext))
            .expect("seal")
    }

    fn open(&self, envelope: &[u8]) -> Vec<u8> {
        self.rt
            .block_on(self.reader.open(&self.ctx, envelope))
            .expect("open")
    }

    /// A case that seals `input` through the warm key-ring.
    fn seal_case<'a>(&'a self, name: &str, input: &'a [u8]) -> Case<'a> {
        Case::new(name, move |n| {
            self.rt.block_on(async {
                for _ in 0..n {
                    let env = self.writer.seal(&self.ctx, black_box(input)).await;
                    black_box(env.expect("seal"));
                }
            })
        })
    }

    /// A case that opens `envelope` through the warm key-ring (unwrap cache warm).
    fn open_case<'a>(&'a self, name: &str, envelope: &'a [u8]) -> Case<'a> {
        Case::new(name, move |n| {
            self.rt.block_on(async {
                for _ in 0..n {
                    let out = self.reader.open(&self.ctx, black_box(envelope)).await;
                    black_box(out.expect("open"));
                }
            })
        })
    }

    /// The data key and wrapped key of an envelope, as the core-only path needs them.
    fn keys_of(&self, envelope: &[u8]) -> (DataKey, WrappedKey) {
        let wrapped = inspect(envelope).expect("header").wrapped_key;
        let key = self
            .rt
            .block_on(self.kek.unwrap(&wrapped, &self.ctx))
            .expect("unwrap");
        (key, wrapped)
    }
}

/// Output: everything printed goes to stdout and into results.md.
struct Report {
    md: String,
}

impl Report {
    fn say(&mut self, text: &str) {
        print!("{text}");
        self.md.push_str(text);
    }
    fn para(&mut self, text: &str) {
        self.say(&format!("{text}\n\n"));
    }
    fn table(&mut self, t: &Table) {
        self.say(&t.render());
        self.say("\n");
    }
}

fn progress(msg: &str) {
    eprintln!("[perf] {msg}");
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("getrandom");
    k
}

/// A work buffer of `len` bytes placed 2 KiB + 64 B away from `src` modulo 4 KiB. Two heap
/// buffers of the same size often start at the same offset modulo 4 KiB; copying one into the
/// other and then running AES-GCM over the copy was measured 3× slower at 16–256 KiB on this
/// machine (4 KiB aliasing), an artefact of the layout, not a property of the cipher.
struct WorkBuf {
    v: Vec<u8>,
    start: usize,
    len: usize,
}

impl WorkBuf {
    fn away_from(src: &[u8]) -> Self {
        let len = src.len();
        let v = vec![0u8; len + 8192];
        let base = v.as_ptr() as usize % 4096;
        let want = (src.as_ptr() as usize + 2048 + 64) % 4096;
        let start = (want + 4096 - base) % 4096;
        Self { v, start, len }
    }

    fn buf(&mut self) -> &mut [u8] {
        &mut self.v[self.start..self.start + self.len]
    }
}

fn raw_seal_case<'a, A: RawAead + 'a>(name: &'static str, aead: A, input: &'a [u8]) -> Case<'a> {
    let mut work = WorkBuf::away_from(input);
    let mut counter = 0u64;
    Case::new(name, move |n| {
        for _ in 0..n {
            let w = work.buf();
            w.copy_from_slice(input);
            counter += 1;
            black_box(aead.seal(counter_nonce(counter), black_box(w)));
        }
    })
}

/// Raw AES-GCM in place with no copy: the cipher alone (a reference, not a baseline: an API
/// that leaves its input intact needs the copy).
fn raw_inplace_case<'a, A: RawAead + 'a>(name: &'static str, aead: A, input: &'a [u8]) -> Case<'a> {
    let mut work = input.to_vec();
    let mut counter = 0u64;
    Case::new(name, move |n| {
        for _ in 0..n {
            counter += 1;
            black_box(aead.seal(counter_nonce(counter), black_box(&mut work)));
        }
    })
}

fn raw_open_case<'a, A: RawAead + 'a>(name: &'static str, aead: A, input: &'a [u8]) -> Case<'a> {
    let nonce = counter_nonce(u64::MAX);
    let mut ct = input.to_vec();
    let tag = aead.seal(nonce, &mut ct);
    let mut work = WorkBuf::away_from(&ct);
    work.buf().copy_from_slice(&ct);
    assert!(aead.open(nonce, work.buf(), &tag), "{name}: open failed");
    assert_eq!(work.buf(), input, "{name}: open returned other bytes");
    Case::new(name, move |n| {
        for _ in 0..n {
            let w = work.buf();
            w.copy_from_slice(&ct);
            let ok = aead.open(nonce, black_box(w), &tag);
            assert!(ok);
        }
    })
}

/// The three raw peers produce identical ciphertext and tags (same key, nonce, input).
fn check_peers_agree() {
    let key = random_key();
    let input = mem::pattern(4099, 9);
    let nonce = counter_nonce(42);
    let seal = |a: &dyn RawAead| {
        let mut b = input.clone();
        let t = a.seal(nonce, &mut b);
        (b, t)
    };
    let r = seal(&Ring::new(&key));
    assert_eq!(r, seal(&AwsLc::new(&key)), "ring and aws-lc-rs disagree");
    assert_eq!(r, seal(&RustCrypto::new(&key)), "ring and aes-gcm disagree");
}

/// Seal and open groups at one size: the three raw peers, Sealbox, and (seal only) a plain
/// copy of the payload as a reference.
fn measure_size(
    fx: &Fixture,
    size: usize,
    cfg: &Config,
    totals: &mut (Duration, Duration),
) -> Vec<Cell> {
    let input = mem::pattern(size, size as u64);
    let key = random_key();
    let envelope = fx.seal(&input);
    assert_eq!(fx.open(&envelope), input, "Sealbox round trip at {size}");
    let mut cells = Vec::new();

    progress(&format!("{} seal", size_label(size)));
    let mut copy_buf = WorkBuf::away_from(&input);
    let mut cases = vec![
        raw_seal_case(RING, Ring::new(&key), &input),
        raw_seal_case(AWS_LC, AwsLc::new(&key), &input),
        raw_seal_case(RUSTCRYPTO, RustCrypto::new(&key), &input),
        fx.seal_case(SEALBOX, &input),
        raw_inplace_case(INPLACE, Ring::new(&key), &input),
        Case::new(MEMCPY, |n| {
            for _ in 0..n {
                let w = copy_buf.buf();
                w.copy_from_slice(black_box(&input));
                black_box(w);
            }
        }),
    ];
    let names = [RING, AWS_LC, RUSTCRYPTO, SEALBOX, INPLACE, MEMCPY];
    for (name, stats) in names.iter().zip(measure(&mut cases, cfg)) {
        totals.0 += stats.cpu;
        totals.1 += stats.wall;
        cells.push(Cell {
            size,
            op: Op::Seal,
            name,
            stats,
        });
    }
    drop(cases);

    progress(&format!("{} open", size_label(size)));
    let mut cases = vec![
        raw_open_case(RING, Ring::new(&key), &input),
        raw_open_case(AWS_LC, AwsLc::new(&key), &input),
        raw_open_case(RUSTCRYPTO, RustCrypto::new(&key), &input),
        fx.open_case(SEALBOX, &envelope),
    ];
    let names = [RING, AWS_LC, RUSTCRYPTO, SEALBOX];
    for (name, stats) in names.iter().zip(measure(&mut cases, cfg)) {
        totals.0 += stats.cpu;
        totals.1 += stats.wall;
        cells.push(Cell {
            size,
            op: Op::Open,
            name,
            stats,
        });
    }
    cells
}

fn cell<'c>(cells: &'c [Cell], size: usize, op: Op, name: &str) -> &'c Cell {
    cells
        .iter()
        .find(|c| c.size == size && c.op == op && c.name == name)
        .unwrap_or_else(|| panic!("no cell {size} {op:?} {name}"))
}

/// The fastest raw peer at (size, op).
fn fastest_raw<'c>(cells: &'c [Cell], size: usize, op: Op) -> &'c Cell {
    RAW.iter()
        .map(|n| cell(cells, size, op, n))
        .min_by(|a, b| a.stats.median_ns.total_cmp(&b.stats.median_ns))
        .expect("three peers")
}

/// Throughput ratio of `c` to the fastest raw peer (1.00× = as fast).
fn ratio_to_fastest(cells: &[Cell], c: &Cell) -> f64 {
    fastest_raw(cells, c.size, c.op).stats.median_ns / c.stats.median_ns
}

fn with_spread(s: &Stats) -> String {
    format!("{} (±{:.0}%)", ns(s.median_ns), s.spread_pct())
}

/// The core's AEAD backend in this build, as scripts/perf.sh found it with `cargo tree`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Ring,
    RustCrypto,
}

fn core_backend() -> Option<Backend> {
    match std::env::var("SEALBOX_PERF_CORE_BACKEND").ok().as_deref() {
        Some("ring") => Some(Backend::Ring),
        Some("rustcrypto") => Some(Backend::RustCrypto),
        _ => None,
    }
}

fn derive_like_core(key: &[u8; 32], salt: &[u8; 32], suite_id: &[u8; 2]) -> ([u8; 32], [u8; 32]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), key);
    let mut k = [0u8; 32];
    let mut c = [0u8; 32];
    hk.expand_multi_info(&[PAYLOAD_KEY_LABEL, suite_id], &mut k)
        .expect("32 bytes");
    hk.expand_multi_info(&[COMMITMENT_LABEL, suite_id], &mut c)
        .expect("32 bytes");
    (k, c)
}

/// The core's derivation computed with `ring::hkdf` instead (a reference for what HKDF can cost).
fn derive_with_ring(key: &[u8; 32], salt: &[u8; 32], suite_id: &[u8; 2]) -> ([u8; 32], [u8; 32]) {
    use ring::hkdf::{HKDF_SHA256, Salt};
    let prk = Salt::new(HKDF_SHA256, salt).extract(key);
    let mut k = [0u8; 32];
    let mut c = [0u8; 32];
    prk.expand(&[PAYLOAD_KEY_LABEL, suite_id], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut k))
        .expect("32 bytes");
    prk.expand(&[COMMITMENT_LABEL, suite_id], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut c))
        .expect("32 bytes");
    (k, c)
}

struct Breakdown {
    seal: Table,
    open: Table,
    csv: String,
    /// (component, ns) of the seal path, largest first, for the target explanations.
    seal_parts: Vec<(String, f64)>,
    open_parts: Vec<(String, f64)>,
    keyring_seal_ns: f64,
    keyring_open_ns: f64,
}

/// Where the per-payload time of a 1 KiB seal and open goes.
fn breakdown(fx: &Fixture, cfg: &Config, totals: &mut (Duration, Duration)) -> Breakdown {
    const SIZE: usize = 1 << 10;
    let input = mem::pattern(SIZE, 77);
    let envelope = fx.seal(&input);
    let empty_env = fx.seal(b"");
    let header = inspect(&envelope).expect("header");
    let (data_key, wrapped) = fx.keys_of(&envelope);
    assert_eq!(
        open_envelope(&data_key, &envelope, &fx.ctx).expect("core open"),
        input
    );
    let salt = header.salt;
    let suite_id = Suite::Aes256GcmHkdfSha256Commit.id().to_be_bytes();
    let dk = *data_key.expose_secret();
    // The derivation reproduced here is the core's: check it against the envelope's commitment.
    assert_eq!(
        derive_like_core(&dk, &salt, &suite_id).1,
        header.commitment,
        "the breakdown's HKDF does not reproduce the core's commitment"
    );
    let payload_key = derive_like_core(&dk, &salt, &suite_id).0;
    assert_eq!(
        derive_with_ring(&dk, &salt, &suite_id),
        derive_like_core(&dk, &salt, &suite_id),
        "ring::hkdf and the hkdf crate disagree"
    );
    let aead_ring = Ring::new(&payload_key);
    let aead_rc = RustCrypto::new(&payload_key);

    // Seal-side components.
    progress("breakdown: seal path at 1 KiB");
    let mut buf_ring = input.clone();
    let mut buf_rc = input.clone();
    let mut ctr = 0u64;
    let mut ctr2 = 0u64;
    let seal_names: Vec<&str> = vec![
        "getrandom::fill, 44 bytes (salt + nonce)",
        "HKDF-SHA256 Hkdf::new only (Extract, then HMAC keyed with the PRK)",
        "HKDF-SHA256 Extract + 2 Expands (payload key, commitment)",
        "AES-256-GCM key setup: ring (UnboundKey::new)",
        "AES-256-GCM key setup: RustCrypto (Aes256Gcm::new)",
        "AES-256-GCM key setup: aws-lc-rs (UnboundKey::new)",
        "output Vec + header/AAD encoding + plaintext copy",
        "AES-256-GCM seal 1 KiB in place, key set up: ring",
        "AES-256-GCM seal 1 KiB in place, key set up: RustCrypto",
        "core seal_with_data_key, 1 KiB (no key-ring)",
        "core seal_with_data_key, 0 B",
        "Keyring::seal, 1 KiB",
        "Keyring::seal, 0 B",
        "reference: the same HKDF (Extract + 2 Expands) with ring::hkdf",
        "reference: SHA-256 of 32 bytes (one block), sha2 0.11",
    ];
    let mut cases = vec![
        Case::new(seal_names[0], |n| {
            let mut b = [0u8; 44];
            for _ in 0..n {
                getrandom::fill(black_box(&mut b)).expect("getrandom");
            }
        }),
        Case::new(seal_names[1], |n| {
            for _ in 0..n {
                black_box(Hkdf::<Sha256>::new(Some(black_box(&salt)), black_box(&dk)));
            }
        }),
        Case::new(seal_names[2], |n| {
            for _ in 0..n {
                black_box(derive_like_core(
                    black_box(&dk),
                    black_box(&salt),
                    &suite_id,
                ));
            }
        }),
        Case::new(seal_names[3], |n| {
            for _ in 0..n {
                black_box(ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, black_box(&payload_key))
                        .expect("key"),
                ));
            }
        }),
        Case::new(seal_names[4], |n| {
            use aes_gcm::aead::KeyInit;
            for _ in 0..n {
                black_box(aes_gcm::Aes256Gcm::new(&(*black_box(&payload_key)).into()));
            }
        }),
        Case::new(seal_names[5], |n| {
            for _ in 0..n {
                black_box(aws_lc_rs::aead::LessSafeKey::new(
                    aws_lc_rs::aead::UnboundKey::new(
                        &aws_lc_rs::aead::AES_256_GCM,
                        black_box(&payload_key),
                    )
                    .expect("key"),
                ));
            }
        }),
        Case::new(seal_names[6], |n| {
            for _ in 0..n {
                let mut out = Vec::with_capacity(header.encoded_len() + SIZE + peers::TAG_LEN);
                let aad = header.encode_into(&mut out);
                out.extend_from_slice(black_box(&input));
                black_box((out, aad));
            }
        }),
        Case::new(seal_names[7], |n| {
            for _ in 0..n {
                ctr += 1;
                black_box(aead_ring.seal(counter_nonce(ctr), black_box(&mut buf_ring)));
            }
        }),
        Case::new(seal_names[8], |n| {
            for _ in 0..n {
                ctr2 += 1;
                black_box(aead_rc.seal(counter_nonce(ctr2), black_box(&mut buf_rc)));
            }
        }),
        Case::new(seal_names[9], |n| {
            for _ in 0..n {
                black_box(
                    seal_with_data_key(&data_key, &wrapped, &fx.ctx, black_box(&input))
                        .expect("seal"),
                );
            }
        }),
        Case::new(seal_names[10], |n| {
            for _ in 0..n {
                black_box(seal_with_data_key(&data_key, &wrapped, &fx.ctx, b"").expect("seal"));
            }
        }),
        fx.seal_case(seal_names[11], &input),
        fx.seal_case(seal_names[12], b""),
        Case::new(seal_names[13], |n| {
            for _ in 0..n {
                black_box(derive_with_ring(
                    black_box(&dk),
                    black_box(&salt),
                    &suite_id,
                ));
            }
        }),
        Case::new(seal_names[14], |n| {
            use sha2::Digest;
            for _ in 0..n {
                black_box(Sha256::digest(black_box(&dk)));
            }
        }),
    ];
    let seal_stats = measure(&mut cases, cfg);
    drop(cases);

    // Open-side components.
    progress("breakdown: open path at 1 KiB");
    let (ct_ring, tag_ring) = {
        let mut b = input.clone();
        let t = aead_ring.seal(header.nonce, &mut b);
        (b, t)
    };
    let mut work_ring = WorkBuf::away_from(&ct_ring);
    let mut work_rc = WorkBuf::away_from(&ct_ring);
    let body = parse(&envelope).expect("parse").body.to_vec();
    let open_names: Vec<&str> = vec![
        "parse (header decode, AAD) + context check",
        "ciphertext copy to a new Vec (ct.to_vec())",
        "AES-256-GCM open 1 KiB in place, key set up: ring",
        "AES-256-GCM open 1 KiB in place, key set up: RustCrypto",
        "core open_envelope, 1 KiB (no key-ring)",
        "core open_envelope, 0 B",
        "Keyring::open, 1 KiB",
        "Keyring::open, 0 B",
    ];
    let mut cases = vec![
        Case::new(open_names[0], |n| {
            for _ in 0..n {
                let p = parse(black_box(&envelope)).expect("parse");
                check_context(&p.header.context, &fx.ctx).expect("context");
                black_box(p);
            }
        }),
        Case::new(open_names[1], |n| {
            for _ in 0..n {
                black_box(black_box(&body[..SIZE]).to_vec());
            }
        }),
        Case::new(open_names[2], |n| {
            for _ in 0..n {
                let w = work_ring.buf();
                w.copy_from_slice(&ct_ring);
                assert!(aead_ring.open(header.nonce, black_box(w), &tag_ring));
            }
        }),
        Case::new(open_names[3], |n| {
            for _ in 0..n {
                let w = work_rc.buf();
                w.copy_from_slice(&ct_ring);
                assert!(aead_rc.open(header.nonce, black_box(w), &tag_ring));
            }
        }),
        Case::new(open_names[4], |n| {
            for _ in 0..n {
                black_box(open_envelope(&data_key, black_box(&envelope), &fx.ctx).expect("open"));
            }
        }),
        Case::new(open_names[5], |n| {
            let (k, _) = fx.keys_of(&empty_env);
            for _ in 0..n {
                black_box(open_envelope(&k, black_box(&empty_env), &fx.ctx).expect("open"));
            }
        }),
        fx.open_case(open_names[6], &envelope),
        fx.open_case(open_names[7], &empty_env),
    ];
    let open_stats = measure(&mut cases, cfg);
    drop(cases);
    for s in seal_stats.iter().chain(&open_stats) {
        totals.0 += s.cpu;
        totals.1 += s.wall;
    }
    // A 1 KiB open in place includes a 1 KiB copy (restoring the ciphertext); take the copy out.
    let copy_1k = open_stats[1].median_ns;

    let m = |i: usize| seal_stats[i].median_ns;
    let o = |i: usize| open_stats[i].median_ns;
    let backend = core_backend();
    let (setup, aead_seal, aead_open, bname) = match backend {
        Some(Backend::RustCrypto) => (m(4), m(8), o(3), "RustCrypto"),
        _ => (m(3), m(7), o(2), "ring"),
    };
    let keyring_seal = m(11);
    let keyring_open = o(6);
    let core_seal = m(9);
    let core_open = o(4);
    let pct = |v: f64, total: f64| format!("{:.0}%", 100.0 * v / total);

    let mut csv = String::from("path,component,ns_per_op,q1_ns,q3_ns,batches\n");
    for (name, s) in seal_names.iter().zip(&seal_stats) {
        csv.push_str(&format!(
            "seal,\"{name}\",{:.1},{:.1},{:.1},{}\n",
            s.median_ns, s.q1_ns, s.q3_ns, s.batches
        ));
    }
    for (name, s) in open_names.iter().zip(&open_stats) {
        csv.push_str(&format!(
            "open,\"{name}\",{:.1},{:.1},{:.1},{}\n",
            s.median_ns, s.q1_ns, s.q3_ns, s.batches
        ));
    }

    // Seal table: every measured row, then the derived ones.
    let mut seal = Table::new(&["seal path at 1 KiB", "ns/op", "share of Keyring::seal"]);
    for (i, (name, s)) in seal_names.iter().zip(&seal_stats).enumerate() {
        let mut label = (*name).to_owned();
        let used = match backend {
            Some(Backend::RustCrypto) => [4, 8].contains(&i),
            Some(Backend::Ring) => [3, 7].contains(&i),
            None => false,
        };
        if used {
            label.push_str(" ← the core's backend");
        }
        let share = if i >= 9 || i == 1 || i == 5 || (!used && [3, 4, 7, 8].contains(&i)) {
            String::new()
        } else {
            pct(s.median_ns, keyring_seal)
        };
        seal.row(vec![label, with_spread(s), share]);
    }
    let seal_named = m(0) + m(2) + setup + m(6) + aead_seal;
    let seal_rest = core_seal - seal_named;
    let seal_keyring = keyring_seal - core_seal;
    seal.row(vec![
        format!("= sum of the core's steps above (random, HKDF, {bname} key setup, output/header, {bname} AEAD)"),
        ns(seal_named),
        pct(seal_named, keyring_seal),
    ]);
    seal.row(vec![
        "= core seal − that sum (unattributed: Zeroizing, tag append, dispatch, cache effects)"
            .into(),
        ns(seal_rest),
        pct(seal_rest, keyring_seal),
    ]);
    seal.row(vec![
        "= key-ring lease path (Keyring::seal − core seal, 1 KiB)".into(),
        ns(seal_keyring),
        pct(seal_keyring, keyring_seal),
    ]);
    seal.row(vec![
        "= key-ring lease path (Keyring::seal − core seal, 0 B)".into(),
        ns(m(12) - m(10)),
        String::new(),
    ]);

    let mut open = Table::new(&["open path at 1 KiB", "ns/op", "share of Keyring::open"]);
    let hkdf = m(2);
    let open_rows: Vec<(String, f64, Option<&Stats>)> = vec![
        (open_names[0].into(), o(0), Some(&open_stats[0])),
        (
            "HKDF-SHA256 Extract + 2 Expands (from the seal table)".into(),
            hkdf,
            Some(&seal_stats[2]),
        ),
        (
            format!("AES-256-GCM key setup: {bname} (from the seal table)"),
            setup,
            None,
        ),
        (open_names[1].into(), copy_1k, Some(&open_stats[1])),
        (
            format!(
                "{} minus a 1 KiB copy ← the core's backend",
                open_names[if bname == "ring" { 2 } else { 3 }]
            ),
            aead_open - copy_1k,
            None,
        ),
    ];
    for (name, v, s) in &open_rows {
        open.row(vec![
            name.clone(),
            s.map_or_else(
                || ns(*v),
                |s| {
                    if (s.median_ns - v).abs() < 0.5 {
                        with_spread(s)
                    } else {
                        ns(*v)
                    }
                },
            ),
            pct(*v, keyring_open),
        ]);
    }
    for i in [2usize, 3] {
        let s = &open_stats[i];
        open.row(vec![
            format!("{} (incl. the copy)", open_names[i]),
            with_spread(s),
            String::new(),
        ]);
    }
    for i in 4..8 {
        open.row(vec![
            open_names[i].into(),
            with_spread(&open_stats[i]),
            String::new(),
        ]);
    }
    let open_named: f64 = open_rows.iter().map(|r| r.1).sum();
    let open_rest = core_open - open_named;
    let open_keyring = keyring_open - core_open;
    open.row(vec![
        "= sum of the core's steps above".into(),
        ns(open_named),
        pct(open_named, keyring_open),
    ]);
    open.row(vec![
        "= core open − that sum (unattributed: commitment compare, Zeroizing, dispatch)".into(),
        ns(open_rest),
        pct(open_rest, keyring_open),
    ]);
    open.row(vec![
        "= key-ring unwrap-cache path (Keyring::open − core open, 1 KiB)".into(),
        ns(open_keyring),
        pct(open_keyring, keyring_open),
    ]);
    open.row(vec![
        "= key-ring unwrap-cache path (Keyring::open − core open, 0 B)".into(),
        ns(o(7) - o(5)),
        String::new(),
    ]);

    let mut seal_parts = vec![
        ("OS random (getrandom)".to_owned(), m(0)),
        ("HKDF Extract + 2 Expands".to_owned(), hkdf),
        (format!("AES-GCM key setup ({bname})"), setup),
        ("output allocation + header + copy".to_owned(), m(6)),
        (format!("AES-GCM over 1 KiB ({bname})"), aead_seal),
        ("key-ring lease path".to_owned(), seal_keyring),
        ("unattributed in the core".to_owned(), seal_rest),
    ];
    seal_parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut open_parts = vec![
        ("parse + context check".to_owned(), o(0)),
        ("HKDF Extract + 2 Expands".to_owned(), hkdf),
        (format!("AES-GCM key setup ({bname})"), setup),
        ("ciphertext copy".to_owned(), copy_1k),
        (format!("AES-GCM over 1 KiB ({bname})"), aead_open - copy_1k),
        ("key-ring unwrap-cache path".to_owned(), open_keyring),
        ("unattributed in the core".to_owned(), open_rest),
    ];
    open_parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    Breakdown {
        seal,
        open,
        csv,
        seal_parts,
        open_parts,
        keyring_seal_ns: keyring_seal,
        keyring_open_ns: keyring_open,
    }
}

fn top_parts(parts: &[(String, f64)]) -> String {
    parts
        .iter()
        .take(4)
        .map(|(n, v)| format!("{n} {} ns", int(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Envelope overhead with the local KEK and a 1-field context, from real envelopes.
fn overhead(fx: &Fixture, report: &mut Report) -> String {
    let mut csv = String::from("plaintext_bytes,envelope_bytes,overhead_bytes\n");
    let mut per_size = Vec::new();
    for size in [0usize, 1 << 10, 1 << 20] {
        let env = fx.seal(&mem::pattern(size, 5));
        per_size.push((size, env.len(), env.len() - size));
        csv.push_str(&format!("{size},{},{}\n", env.len(), env.len() - size));
    }
    let env = fx.seal(&mem::pattern(1 << 10, 5));
    let overhead = env.len() - (1 << 10);
    let h = inspect(&env).expect("header");
    let kek = h.kek();
    let provider = kek.provider().len();
    let key_id = kek.key_id().len();
    let version = kek.key_version().map_or(0, str::len);
    let wrapped = h.wrapped_key.ciphertext().len();
    let context = h.context.encoded_len();
    let fixed = overhead - provider - key_id - version - wrapped - context;

    let mut t = Table::new(&[
        "envelope part (local KEK, context {namespace: default})",
        "bytes",
    ]);
    t.row(vec![
        format!("provider id \"{}\"", kek.provider()),
        provider.to_string(),
    ]);
    t.row(vec![
        format!("key id \"{}\"", kek.key_id()),
        key_id.to_string(),
    ]);
    t.row(vec![
        format!("key version \"{}\"", kek.key_version().unwrap_or("")),
        version.to_string(),
    ]);
    t.row(vec![
        "wrapped data key (local: nonce + key + tag)".into(),
        wrapped.to_string(),
    ]);
    t.row(vec![
        "encoded context (1 field)".into(),
        context.to_string(),
    ]);
    t.row(vec![
        "fixed: magic, version, suite, length fields, salt, nonce, commitment, body length, tag"
            .into(),
        fixed.to_string(),
    ]);
    t.row(vec![
        "**total overhead (envelope − plaintext)**".into(),
        format!("**{overhead}**"),
    ]);
    report.table(&t);
    let sizes = per_size
        .iter()
        .map(|(p, e, o)| format!("{} → {e} B (+{o})", size_label(*p).replace("0 B", "0 B")))
        .collect::<Vec<_>>()
        .join("; ");
    report.para(&format!(
        "Measured on real envelopes: {sizes}. The overhead does not depend on the payload size."
    ));
    report.para(&format!(
        "For any KMS: overhead = {fixed} + |provider id| + |key id| + |key version| + |wrapped key| + |encoded context| bytes. \
         Vault, AWS and GCP envelopes therefore weigh the local figure ({overhead} B) plus the difference in those lengths \
         (their provider ids, key ids such as a full ARN or Cloud KMS key name, and wrapped-key lengths); measuring them \
         against real KMSs is later work (issue #16, section 6)."
    ));
    csv
}

fn read_first(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix(prefix)
                .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn run(args: &[String]) {
    let mut out_dir = PathBuf::from("target/perf");
    let mut cfg = Config::standard();
    let mut quick = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out_dir = PathBuf::from(it.next().expect("--out DIR")),
            "--quick" => {
                cfg = Config::quick();
                quick = true;
            }
            other => {
                eprintln!(
                    "unknown argument {other}\nusage: sealbox-perf run [--out DIR] [--quick]"
                );
                std::process::exit(2);
            }
        }
    }
    std::fs::create_dir_all(&out_dir).expect("create output directory");
    let started = Instant::now();
    let load_start = loadavg();
    check_peers_agree();
    let fx = Fixture::new();
    let mut report = Report { md: String::new() };
    let mut totals = (Duration::ZERO, Duration::ZERO);

    report.say("# Sealbox performance run\n\n");
    if let Ok(meta) = std::env::var("SEALBOX_PERF_META") {
        for line in meta.lines().filter(|l| !l.trim().is_empty()) {
            report.say(&format!("- {line}\n"));
        }
    }
    report.say(&format!(
        "- CPU: {} ({} logical CPUs visible); kernel {}\n",
        read_first("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("?".into(), |s| s.trim().to_owned()),
    ));
    report.say(&format!(
        "- method: one thread; per case, batches of ≈ {} ms of thread CPU time, ≥ {} batches and ≥ {} ms per case, \
         cases of a group interleaved batch by batch; figure = median ns/op over batches (± = half the interquartile range){}\n",
        cfg.batch.as_millis(),
        cfg.min_batches,
        cfg.min_time.as_millis(),
        if quick { "; **--quick: smoke test, figures not meaningful**" } else { "" }
    ));
    report.say(&format!("- load average at start: {load_start}\n\n"));

    // Sections 1 and 6 share one grid of measurements.
    let mut cells = Vec::new();
    for &size in &CURVE_SIZES {
        cells.extend(measure_size(&fx, size, &cfg, &mut totals));
    }

    report.say("## 1. Seal/open throughput beside raw AES-256-GCM\n\n");
    report.para(
        "Raw peers: key expanded once, empty AAD, a fresh (counter) nonce per operation, each operation \
         copies the payload into a preallocated buffer and seals or opens it in place (one copy, as \
         any API that leaves its input intact needs). Sealbox: `Keyring::seal` / `Keyring::open` \
         with a warm key-ring (local KEK, one context, lease and unwrap cache warm), returning a new `Vec`. \
         Ratio = throughput ÷ the fastest raw peer's at that size and operation (1.00× = as fast).",
    );
    let mut t = Table::new(&[
        "size",
        "implementation",
        "seal MB/s",
        "seal ns/op",
        "seal ratio",
        "open MB/s",
        "open ns/op",
        "open ratio",
    ]);
    for &size in &SECTION1_SIZES {
        for name in RAW.iter().chain([SEALBOX, INPLACE, MEMCPY].iter()) {
            let s = cell(&cells, size, Op::Seal, name);
            let (o_mb, o_ns, o_r) = if *name == MEMCPY || *name == INPLACE {
                ("".into(), "".into(), "".into())
            } else {
                let o = cell(&cells, size, Op::Open, name);
                (
                    int(o.stats.mb_per_s(size)),
                    with_spread(&o.stats),
                    ratio(ratio_to_fastest(&cells, o)),
                )
            };
            t.row(vec![
                size_label(size),
                if *name == SEALBOX {
                    format!("**{name}**")
                } else {
                    (*name).to_owned()
                },
                int(s.stats.mb_per_s(size)),
                with_spread(&s.stats),
                ratio(ratio_to_fastest(&cells, s)),
                o_mb,
                o_ns,
                o_r,
            ]);
        }
    }
    report.table(&t);
    let k = 1 << 10;
    let fixed_seal = cell(&cells, k, Op::Seal, SEALBOX).stats.median_ns
        - fastest_raw(&cells, k, Op::Seal).stats.median_ns;
    let fixed_open = cell(&cells, k, Op::Open, SEALBOX).stats.median_ns
        - fastest_raw(&cells, k, Op::Open).stats.median_ns;
    report.para(&format!(
        "Sealbox's fixed per-payload cost at 1 KiB (Sealbox ns/op − fastest raw ns/op): **seal {} ns** \
         (fastest raw: {}), **open {} ns** (fastest raw: {}).",
        int(fixed_seal),
        fastest_raw(&cells, k, Op::Seal).name,
        int(fixed_open),
        fastest_raw(&cells, k, Op::Open).name,
    ));
    let backend_name = match core_backend() {
        Some(Backend::Ring) => "ring",
        Some(Backend::RustCrypto) => "RustCrypto aes-gcm",
        None => "unknown (run through scripts/perf.sh to record it)",
    };
    report.para(&format!(
        "The core's AEAD backend in this build: **{backend_name}**."
    ));

    let bd = breakdown(&fx, &cfg, &mut totals);
    report.say("### Cost breakdown at 1 KiB\n\n");
    report.para(
        "Each row is measured on its own (same run, interleaved); rows marked = are derived. \
         The core's steps are reproduced with the same crates and versions (getrandom 0.4, hkdf 0.13, \
         sha2 0.11, the core's labels; the HKDF output is checked against a real envelope's commitment).",
    );
    report.table(&bd.seal);
    report.table(&bd.open);

    // Targets of section 1 (and memory, below).
    let r = |size: usize, op: Op| ratio_to_fastest(&cells, cell(&cells, size, op, SEALBOX));
    let mut targets = Table::new(&["target (issue #16)", "measured", "status"]);
    let mut target_row = |name: String, v: f64, goal: f64| {
        targets.row(vec![
            name,
            ratio(v),
            if v >= goal {
                "met".into()
            } else {
                "**missed**".into()
            },
        ]);
    };
    target_row(
        "seal ≥ 0.80× fastest raw at 1 MiB".into(),
        r(1 << 20, Op::Seal),
        0.8,
    );
    target_row(
        "open ≥ 0.80× fastest raw at 1 MiB".into(),
        r(1 << 20, Op::Open),
        0.8,
    );
    target_row(
        "seal ≥ 0.50× fastest raw at 1 KiB".into(),
        r(k, Op::Seal),
        0.5,
    );
    target_row(
        "open ≥ 0.50× fastest raw at 1 KiB".into(),
        r(k, Op::Open),
        0.5,
    );
    report.say("### Targets\n\n");
    report.table(&targets);
    let raw_k_seal = fastest_raw(&cells, k, Op::Seal).stats.median_ns;
    let raw_k_open = fastest_raw(&cells, k, Op::Open).stats.median_ns;
    report.para(&format!(
        "At 1 KiB, 0.5× allows Sealbox at most one extra raw operation of overhead per payload: \
         {} ns for seal and {} ns for open here. Measured overhead: {} ns (seal), {} ns (open). \
         Largest parts of a 1 KiB `Keyring::seal` ({} ns): {}. Of a 1 KiB `Keyring::open` ({} ns): {}.",
        int(raw_k_seal),
        int(raw_k_open),
        int(fixed_seal),
        int(fixed_open),
        int(bd.keyring_seal_ns),
        top_parts(&bd.seal_parts),
        int(bd.keyring_open_ns),
        top_parts(&bd.open_parts),
    ));
    let m = 1 << 20;
    let mut at_1m = Vec::new();
    for op in [Op::Seal, Op::Open] {
        let fr = fastest_raw(&cells, m, op);
        let sb = cell(&cells, m, op, SEALBOX);
        let peers = RAW
            .iter()
            .map(|n| {
                format!(
                    "{n} {}",
                    ratio(ratio_to_fastest(&cells, cell(&cells, m, op, n)))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        at_1m.push(format!(
            "{}: Sealbox {} ns vs fastest raw ({}) {} ns, {} ns more per 1 MiB payload; raw peers: {peers}",
            op.name(),
            int(sb.stats.median_ns),
            fr.name,
            int(fr.stats.median_ns),
            int(sb.stats.median_ns - fr.stats.median_ns),
        ));
    }
    let inplace = cell(&cells, m, Op::Seal, INPLACE).stats.median_ns;
    report.para(&format!(
        "At 1 MiB the fixed cost is negligible; what remains is the bulk AEAD of the core's backend and \
         the output buffer (allocation, first-touch page faults, copy). {}. A 1 MiB memcpy alone takes {} ns; \
         ring sealing 1 MiB in place with no copy at all takes {} ns, against which Sealbox's seal runs at {}.",
        at_1m.join(". "),
        int(cell(&cells, m, Op::Seal, MEMCPY).stats.median_ns),
        int(inplace),
        ratio(inplace / cell(&cells, m, Op::Seal, SEALBOX).stats.median_ns),
    ));

    let esdk_csv = match esdk::section2(&fx, &cfg, &mut report) {
        Ok(csv) => Some(csv),
        Err(e) => {
            report.para(&format!("**Section 2 failed:** {e}"));
            None
        }
    };

    // Section 6: cost curves.
    report.say("## 6. Cost curves, peak memory, envelope overhead\n\n");
    report.say("### Seal and open time against payload size\n\n");
    let mut curve = Table::new(&[
        "size",
        "seal: Sealbox ns",
        "fastest raw ns",
        "ratio",
        "Sealbox − raw ns",
        "open: Sealbox ns",
        "fastest raw ns",
        "ratio",
        "Sealbox − raw ns",
    ]);
    let mut curve_csv =
        String::from("size_bytes,op,sealbox_ns,fastest_raw,fastest_raw_ns,ratio,overhead_ns\n");
    let mut throughput_csv = String::from(
        "size_bytes,op,implementation,ns_per_op,q1_ns,q3_ns,mb_per_s,ratio_to_fastest_raw,batches,ops_per_batch\n",
    );
    for c in &cells {
        throughput_csv.push_str(&format!(
            "{},{},{},{:.1},{:.1},{:.1},{:.1},{:.4},{},{}\n",
            c.size,
            c.op.name(),
            c.name,
            c.stats.median_ns,
            c.stats.q1_ns,
            c.stats.q3_ns,
            c.stats.mb_per_s(c.size),
            if c.name == MEMCPY || c.name == INPLACE {
                f64::NAN
            } else {
                ratio_to_fastest(&cells, c)
            },
            c.stats.batches,
            c.stats.ops_per_batch
        ));
    }
    for &size in &CURVE_SIZES {
        let mut row = vec![size_label(size)];
        for op in [Op::Seal, Op::Open] {
            let sb = cell(&cells, size, op, SEALBOX);
            let fr = fastest_raw(&cells, size, op);
            let rr = fr.stats.median_ns / sb.stats.median_ns;
            row.push(int(sb.stats.median_ns));
            row.push(format!("{} ({})", int(fr.stats.median_ns), fr.name));
            row.push(ratio(rr));
            row.push(int(sb.stats.median_ns - fr.stats.median_ns));
            curve_csv.push_str(&format!(
                "{size},{},{:.1},{},{:.1},{:.4},{:.1}\n",
                op.name(),
                sb.stats.median_ns,
                fr.name,
                fr.stats.median_ns,
                rr,
                sb.stats.median_ns - fr.stats.median_ns
            ));
        }
        curve.row(row);
    }
    report.table(&curve);
    let series = |op: Op, sealbox: bool| -> Vec<(usize, f64)> {
        CURVE_SIZES
            .iter()
            .map(|&s| {
                let c = if sealbox {
                    cell(&cells, s, op, SEALBOX)
                } else {
                    fastest_raw(&cells, s, op)
                };
                (s, c.stats.median_ns)
            })
            .collect()
    };
    let red = plotters::style::RGBColor(200, 30, 30);
    let blue = plotters::style::RGBColor(30, 70, 200);
    let lines = vec![
        plot::Line {
            label: "Sealbox seal".into(),
            color: red,
            dashed: false,
            markers: true,
            points: series(Op::Seal, true),
        },
        plot::Line {
            label: "fastest raw AES-256-GCM seal".into(),
            color: red,
            dashed: true,
            markers: true,
            points: series(Op::Seal, false),
        },
        plot::Line {
            label: "Sealbox open".into(),
            color: blue,
            dashed: false,
            markers: true,
            points: series(Op::Open, true),
        },
        plot::Line {
            label: "fastest raw AES-256-GCM open".into(),
            color: blue,
            dashed: true,
            markers: true,
            points: series(Op::Open, false),
        },
    ];
    let ratio_lines = vec![
        plot::Line {
            label: "seal".into(),
            color: red,
            dashed: false,
            markers: true,
            points: CURVE_SIZES.iter().map(|&s| (s, r(s, Op::Seal))).collect(),
        },
        plot::Line {
            label: "open".into(),
            color: blue,
            dashed: false,
            markers: true,
            points: CURVE_SIZES.iter().map(|&s| (s, r(s, Op::Open))).collect(),
        },
        plot::Line {
            label: "target at 1 MiB: 0.8×".into(),
            color: plotters::style::RGBColor(120, 120, 120),
            dashed: true,
            markers: false,
            points: vec![
                (CURVE_SIZES[0], 0.8),
                (CURVE_SIZES[CURVE_SIZES.len() - 1], 0.8),
            ],
        },
        plot::Line {
            label: "target at 1 KiB: 0.5×".into(),
            color: plotters::style::RGBColor(180, 180, 180),
            dashed: true,
            markers: false,
            points: vec![
                (CURVE_SIZES[0], 0.5),
                (CURVE_SIZES[CURVE_SIZES.len() - 1], 0.5),
            ],
        },
    ];
    let mut plot_errors = Vec::new();
    if let Err(e) = plot::cost_curve(
        &out_dir.join("cost_curve.svg"),
        "Seal and open: CPU time per payload (one core, warm key-ring)",
        &lines,
    ) {
        plot_errors.push(e);
    }
    if let Err(e) = plot::ratio_curve(
        &out_dir.join("ratio_curve.svg"),
        "Sealbox throughput ÷ fastest raw AES-256-GCM",
        &ratio_lines,
    ) {
        plot_errors.push(e);
    }
    report.para(&format!(
        "Files: `cost_curve.csv`, `cost_curve.svg` (log-log, ns/op against size), `ratio_curve.svg`, \
         `throughput.csv` (every implementation at every size){}.",
        if plot_errors.is_empty() { String::new() } else { format!("; **plot errors: {}**", plot_errors.join("; ")) }
    ));

    // Peak memory.
    report.say("### Peak memory for a 4 MiB payload\n\n");
    progress("peak memory (child processes)");
    let mut mem_t = Table::new(&[
        "operation (own child process)",
        "input resident before",
        "peak added by the operation (VmHWM)",
        "input + peak, × payload",
        "heap allocated by the operation at peak",
        "target ≤ 3×",
    ]);
    let mut mem_csv = String::from(
        "operation,payload_bytes,rss0_kb,before_kb,hwm_kb,input_bytes,extra_bytes,total_bytes,total_over_payload,heap_peak_bytes,hwm_reset\n",
    );
    let mut mem_notes = Vec::new();
    for op in ["seal", "open", "roundtrip"] {
        match mem::run_child(op, MEM_SIZE) {
            Ok(res) => {
                let x = res.total_bytes() as f64 / MEM_SIZE as f64;
                mem_t.row(vec![
                    match op {
                        "seal" => "seal (input: plaintext)".to_owned(),
                        "open" => "open (input: envelope)".to_owned(),
                        _ => {
                            "seal then open (input: plaintext; envelope and result kept)".to_owned()
                        }
                    },
                    format!("{} KiB", int(res.input_bytes() as f64 / 1024.0)),
                    format!("{} KiB", int(res.extra_bytes() as f64 / 1024.0)),
                    format!("{x:.3}×"),
                    format!("{} KiB", int(res.heap_peak_bytes as f64 / 1024.0)),
                    if op == "roundtrip" {
                        "n/a: three live buffers are ≥ 3× by construction".into()
                    } else if x <= 3.0 {
                        "met".into()
                    } else {
                        "**missed**".into()
                    },
                ]);
                if !res.hwm_reset {
                    mem_notes.push(format!("{op}: /proc/self/clear_refs refused, VmHWM not reset (the figure is an upper bound)"));
                }
                mem_csv.push_str(&format!(
                    "{op},{MEM_SIZE},{},{},{},{},{},{},{x:.4},{},{}\n",
                    res.rss0_kb,
                    res.before_kb,
                    res.hwm_kb,
                    res.input_bytes(),
                    res.extra_bytes(),
                    res.total_bytes(),
                    res.heap_peak_bytes,
                    res.hwm_reset
                ));
            }
            Err(e) => mem_notes.push(format!("{op}: {e}")),
        }
    }
    report.table(&mem_t);
    report.para(&format!(
        "Resident memory of a child process that only sets up a warm key-ring, prepares the input and runs the \
         operation: `input resident before` = VmRSS after preparing the input − VmRSS of the warm process; \
         `peak added` = VmHWM after the operation − VmRSS before it (VmHWM reset through /proc/self/clear_refs); \
         the multiple is (input + peak added) ÷ 4 MiB. A seal or an open cannot go below 2× (input and output \
         both exist); a round trip that keeps all three buffers cannot go below 3×. The heap column counts the \
         bytes the operation itself allocated at its peak (counting allocator, switched on only in the child).{}",
        if mem_notes.is_empty() { String::new() } else { format!(" Notes: {}.", mem_notes.join("; ")) }
    ));

    report.say("### Envelope overhead (local KEK)\n\n");
    let overhead_csv = overhead(&fx, &mut report);

    report.say("## 3. Codec server CPU per request\n\n");
    let codec_csv = section3(quick, &out_dir, &mut report);
    report.say("## 4. Worker overhead on a real Temporal\n\n");
    let worker_csv = section4(quick, &mut report);
    report.say("## 5. KMS calls, counted by Sealbox and by OpenBao's audit log\n\n");
    let kms_csv = section5(quick, &mut report);
    report.say("## Not yet in this harness\n\n");
    report.para(
        "From section 6, the envelope overheads with AWS KMS and Cloud KMS (the harness starts neither \
         moto nor the Cloud KMS emulator) and Temporal Proxy's; Vault's is in section 5, the Python \
         sample's per-payload size in section 3.",
    );

    let stats = fx.writer.stats();
    let share = if totals.1.is_zero() {
        0.0
    } else {
        totals.0.as_secs_f64() / totals.1.as_secs_f64()
    };
    report.para(&format!(
        "Run: {:.0} s; measured batches took {:.1} s of CPU in {:.1} s of wall time (the harness had the CPU \
         {:.0}% of the time it wanted it: the rest went to other processes); load average at start {load_start}, \
         at end {}. Sealing key-ring: {} seals, {} data keys generated (lease limits: defaults).",
        started.elapsed().as_secs_f64(),
        totals.0.as_secs_f64(),
        totals.1.as_secs_f64(),
        100.0 * share,
        loadavg(),
        stats.seals,
        stats.generate_calls,
    ));

    let write = |name: &str, text: &str| {
        std::fs::write(out_dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    };
    write("results.md", &report.md);
    write("throughput.csv", &throughput_csv);
    write("cost_curve.csv", &curve_csv);
    write("breakdown.csv", &bd.csv);
    write("memory.csv", &mem_csv);
    write("overhead.csv", &overhead_csv);
    write_or_remove(&out_dir, "esdk.csv", esdk_csv);
    write_or_remove(&out_dir, "codec_server.csv", codec_csv);
    write_or_remove(&out_dir, "worker.csv", worker_csv);
    write_or_remove(&out_dir, "kms_calls.csv", kms_csv);
    eprintln!("[perf] wrote {}", out_dir.display());
}

/// Writes `name` in `dir`, or removes it when the section did not run: no stale figures from
/// an earlier run beside this run's results.md.
fn write_or_remove(dir: &std::path::Path, name: &str, csv: Option<String>) {
    let path = dir.join(name);
    match csv {
        Some(text) => std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}")),
        None => {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The program at the path in environment variable `name` (set by scripts/perf.sh), made
/// absolute without resolving links (a venv's python must keep its path to find its venv).
fn program_from_env(name: &str) -> Result<PathBuf, String> {
    let p = std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} is not set (scripts/perf.sh sets it)"))?;
    if !p.exists() {
        return Err(format!("{name}={} does not exist", p.display()));
    }
    std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Runs a section that needs programs from scripts/perf.sh (the release binaries, the Python
/// venv): `setup` is what it needs or why it cannot run; either way the report says what
/// happened. `Some(csv)` when it ran.
fn external_section<T>(
    n: u8,
    report: &mut Report,
    setup: Result<T, String>,
    run: impl FnOnce(&T, &mut Report) -> Result<String, String>,
) -> Option<String> {
    let setup = match std::env::var("SEALBOX_PERF_MISSING") {
        Ok(why) => Err(why),
        Err(_) => setup,
    };
    match setup.map(|s| run(&s, report)) {
        Err(why) => {
            report.para(&format!("Not measured in this run: {why}"));
            None
        }
        Ok(Err(e)) => {
            report.para(&format!("**Section {n} failed:** {e}"));
            None
        }
        Ok(Ok(csv)) => Some(csv),
    }
}

fn section3(quick: bool, out_dir: &std::path::Path, report: &mut Report) -> Option<String> {
    let plan = if quick { codec::Plan::quick() } else { codec::Plan::standard() };
    external_section(3, report, codec::Setup::from_env(), |setup, report| {
        codec::section3(setup, plan, quick, out_dir, report)
    })
}

fn section4(quick: bool, report: &mut Report) -> Option<String> {
    let plan = if quick { worker::Plan::quick() } else { worker::Plan::standard() };
    external_section(4, report, worker::Tools::from_env(), |tools, report| {
        worker::section4(tools, plan, report)
    })
}

fn section5(quick: bool, report: &mut Report) -> Option<String> {
    let plan = if quick { kms::Plan::quick() } else { kms::Plan::standard() };
    external_section(5, report, kms::Tools::from_env(), |tools, report| {
        kms::section5(tools, plan, report)
    })
}

/// `sealbox-perf only N [--out DIR] [--quick]`: section 2, 3 or 5 alone, written to
/// `section<N>.md` (section 3: `codec_server.md`, as before) and its CSV.
fn run_only(args: &[String]) {
    let usage = "usage: sealbox-perf only 2|3|4|5 [--out DIR] [--quick]";
    let section = args.first().map(String::as_str).unwrap_or("");
    let mut out_dir = PathBuf::from("target/perf");
    let mut quick = false;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out_dir = PathBuf::from(it.next().expect("--out DIR")),
            "--quick" => quick = true,
            other => {
                eprintln!("unknown argument {other}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    std::fs::create_dir_all(&out_dir).expect("create output directory");
    let mut report = Report { md: String::new() };
    report.say(&format!(
        "# Sealbox performance run: section {section} only\n\n"
    ));
    if let Ok(meta) = std::env::var("SEALBOX_PERF_META") {
        for line in meta.lines().filter(|l| !l.trim().is_empty()) {
            report.say(&format!("- {line}\n"));
        }
    }
    report.say(&format!(
        "- CPU: {} ({} logical CPUs visible); kernel {}; load average at start: {}\n\n",
        read_first("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("?".into(), |s| s.trim().to_owned()),
        loadavg(),
    ));
    let (md, csv_name, csv) = match section {
        "2" => {
            let cfg = if quick {
                Config::quick()
            } else {
                Config::standard()
            };
            let fx = Fixture::new();
            let csv = esdk::section2(&fx, &cfg, &mut report)
                .map_err(|e| report.para(&format!("**Section 2 failed:** {e}")))
                .ok();
            ("section2.md", "esdk.csv", csv)
        }
        "3" => {
            report.say("## 3. Codec server CPU per request\n\n");
            (
                "codec_server.md",
                "codec_server.csv",
                section3(quick, &out_dir, &mut report),
            )
        }
        "4" => {
            report.say("## 4. Worker overhead on a real Temporal\n\n");
            ("section4.md", "worker.csv", section4(quick, &mut report))
        }
        "5" => {
            report.say("## 5. KMS calls, counted by Sealbox and by OpenBao's audit log\n\n");
            ("section5.md", "kms_calls.csv", section5(quick, &mut report))
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    report.para(&format!("Load average at end: {}.", loadavg()));
    std::fs::write(out_dir.join(md), &report.md).unwrap_or_else(|e| panic!("write {md}: {e}"));
    write_or_remove(&out_dir, csv_name, csv);
    eprintln!("[perf] wrote {}", out_dir.display());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("mem") if args.len() == 3 => {
            mem::child(&args[1], args[2].parse().expect("size in bytes"));
        }
        Some("run") => run(&args[1..]),
        Some("codec") => run_only(&[&["3".to_owned()], &args[1..]].concat()),
        Some("only") => run_only(&args[1..]),
        Some("codec-load") => codec::load_command(&args[1..]),
        None => run(&[]),
        _ => {
            eprintln!(
                "usage: sealbox-perf run [--out DIR] [--quick]\n       sealbox-perf only 2|3|4|5 [--out DIR] [--quick]\n       sealbox-perf mem seal|open|roundtrip BYTES"
            );
            std::process::exit(2);
        }
    }
}
