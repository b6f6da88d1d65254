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
mod breakdown;
mod codec;
mod esdk;
mod fmt;
mod kms;
mod measure;
mod mem;
mod peers;
mod plot;
mod throughput;
mod worker;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hkdf::Hkdf;
use sealbox_core::crypto::{
    COMMITMENT_LABEL, PAYLOAD_KEY_LABEL, S2_COMMITMENT_LABEL, S2_PAYLOAD_KEY_LABEL, check_context,
    check_context_encoding, derive_for_vectors, open_view,
};
use sealbox_core::{
    DataKey, EncryptionContext, KeyProvider, Suite, WrappedKey, inspect, open_envelope, parse,
    parse_view, seal_with_data_key,
};
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;
use sha2::Sha256;

use breakdown::*;
use fmt::{Table, int, ns, ratio, size_label};
use measure::{Case, Config, Stats, measure};
use peers::{AwsLc, RawAead, Ring, RustCrypto, counter_nonce};
use throughput::*;

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
/// The same key-ring writing suite 0x0002 (opt-in; read by every build since it was added).
const SEALBOX_S2: &str = "Sealbox Keyring, suite 0x0002 (opt-in)";
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
    /// Seals like `writer`, writing suite 0x0002.
    writer2: Keyring,
    /// Opens what `writer` and `writer2` sealed, through its unwrap cache (warmed by the first open), as
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
        let writer2 = Keyring::builder(kek.clone())
            .suite(Suite::Aes256GcmHkdfExpandSha256Commit)
            .build()
            .expect("key-ring");
        let reader = Keyring::builder(kek.clone()).build().expect("key-ring");
        let ctx = EncryptionContext::new()
            .with("namespace", "default")
            .expect("context");
        let fx = Self {
            rt,
            kek,
            writer,
            writer2,
            reader,
            ctx,
        };
        let env = fx.seal(b"warm-up");
        assert_eq!(fx.open(&env), b"warm-up");
        let env = fx.seal2(b"warm-up");
        assert_eq!(inspect(&env).expect("header").suite.id(), 2);
        assert_eq!(fx.open(&env), b"warm-up");
        fx
    }

    fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        self.rt
            .block_on(self.writer.seal(&self.ctx, plaintext))
            .expect("seal")
    }

    /// Seals with suite 0x0002.
    fn seal2(&self, plaintext: &[u8]) -> Vec<u8> {
        self.rt
            .block_on(self.writer2.seal(&self.ctx, plaintext))
            .expect("seal")
    }

    fn open(&self, envelope: &[u8]) -> Vec<u8> {
        self.rt
            .block_on(self.reader.open(&self.ctx, envelope))
            .expect("open")
    }

    /// A case that seals `input` through the warm key-ring.
    fn seal_case<'a>(&'a self, name: &str, input: &'a [u8]) -> Case<'a> {
        self.seal_case_with(&self.writer, name, input)
    }

    /// A case that seals `input` through the warm key-ring writing suite 0x0002.
    fn seal_case2<'a>(&'a self, name: &str, input: &'a [u8]) -> Case<'a> {
        self.seal_case_with(&self.writer2, name, input)
    }

    fn seal_case_with<'a>(&'a self, writer: &'a Keyring, name: &str, input: &'a [u8]) -> Case<'a> {
        Case::new(name, move |n| {
            self.rt.block_on(async {
                for _ in 0..n {
                    let env = writer.seal(&self.ctx, black_box(input)).await;
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

    report_header(&mut report, "# Sealbox performance run");
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
        for name in RAW
            .iter()
            .chain([SEALBOX, SEALBOX_S2, INPLACE, MEMCPY].iter())
        {
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
                if *name == SEALBOX || *name == SEALBOX_S2 {
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
    for (suite, name) in [("", SEALBOX), ("suite 0x0002 (opt-in): ", SEALBOX_S2)] {
        for op in [Op::Seal, Op::Open] {
            target_row(
                format!("{suite}{} ≥ 0.50× fastest raw at 1 KiB", op.name()),
                ratio_to_fastest(&cells, cell(&cells, k, op, name)),
                0.5,
            );
        }
    }
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
        "From section 6, the envelope overheads with AWS KMS and Cloud KMS (the only servers for them \
         here, moto and the test kit's emulator, do not use the real services' ciphertext formats, \
         so their sizes would not be AWS's or Google's; docs/performance.md gives the formula) and \
         Temporal Proxy's; Vault's is in section 5, the Python sample's per-payload size in section 3.",
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

/// The report's title, the run's facts from scripts/perf.sh (`SEALBOX_PERF_META`) and the
/// machine's CPU and kernel.
fn report_header(report: &mut Report, title: &str) {
    report.say(&format!("{title}\n\n"));
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

/// The quick or the standard plan of a section.
fn plan<P>(quick: bool, quick_plan: fn() -> P, standard: fn() -> P) -> P {
    if quick { quick_plan() } else { standard() }
}

fn section3(quick: bool, out_dir: &std::path::Path, report: &mut Report) -> Option<String> {
    let plan = plan(quick, codec::Plan::quick, codec::Plan::standard);
    external_section(3, report, codec::Setup::from_env(), |setup, report| {
        codec::section3(setup, plan, quick, out_dir, report)
    })
}

fn section4(quick: bool, report: &mut Report) -> Option<String> {
    let plan = plan(quick, worker::Plan::quick, worker::Plan::standard);
    external_section(4, report, worker::Tools::from_env(), |tools, report| {
        worker::section4(tools, plan, report)
    })
}

fn section5(quick: bool, report: &mut Report) -> Option<String> {
    let plan = plan(quick, kms::Plan::quick, kms::Plan::standard);
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
    report_header(
        &mut report,
        &format!("# Sealbox performance run: section {section} only"),
    );
    report.say(&format!("- load average at start: {}\n\n", loadavg()));
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
