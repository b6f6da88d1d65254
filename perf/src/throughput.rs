//! Section 1's grid: seal and open at one size for the raw peers and Sealbox, and the
//! lookups the tables use.

use super::*;

/// A work buffer of `len` bytes placed 2 KiB + 64 B away from `src` modulo 4 KiB. Two heap
/// buffers of the same size often start at the same offset modulo 4 KiB; copying one into the
/// other and then running AES-GCM over the copy was measured 3× slower at 16–256 KiB on this
/// machine (4 KiB aliasing), an artefact of the layout, not a property of the cipher.
pub(crate) struct WorkBuf {
    v: Vec<u8>,
    start: usize,
    len: usize,
}

impl WorkBuf {
    pub(crate) fn away_from(src: &[u8]) -> Self {
        let len = src.len();
        let v = vec![0u8; len + 8192];
        let base = v.as_ptr() as usize % 4096;
        let want = (src.as_ptr() as usize + 2048 + 64) % 4096;
        let start = (want + 4096 - base) % 4096;
        Self { v, start, len }
    }

    pub(crate) fn buf(&mut self) -> &mut [u8] {
        &mut self.v[self.start..self.start + self.len]
    }
}

pub(crate) fn raw_seal_case<'a, A: RawAead + 'a>(
    name: &'static str,
    aead: A,
    input: &'a [u8],
) -> Case<'a> {
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
pub(crate) fn raw_inplace_case<'a, A: RawAead + 'a>(
    name: &'static str,
    aead: A,
    input: &'a [u8],
) -> Case<'a> {
    let mut work = input.to_vec();
    let mut counter = 0u64;
    Case::new(name, move |n| {
        for _ in 0..n {
            counter += 1;
            black_box(aead.seal(counter_nonce(counter), black_box(&mut work)));
        }
    })
}

pub(crate) fn raw_open_case<'a, A: RawAead + 'a>(
    name: &'static str,
    aead: A,
    input: &'a [u8],
) -> Case<'a> {
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
pub(crate) fn check_peers_agree() {
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
pub(crate) fn measure_size(
    fx: &Fixture,
    size: usize,
    cfg: &Config,
    totals: &mut (Duration, Duration),
) -> Vec<Cell> {
    let input = mem::pattern(size, size as u64);
    let key = random_key();
    let envelope = fx.seal(&input);
    assert_eq!(fx.open(&envelope), input, "Sealbox round trip at {size}");
    let envelope2 = fx.seal2(&input);
    assert_eq!(
        fx.open(&envelope2),
        input,
        "suite 0x0002 round trip at {size}"
    );
    let mut cells = Vec::new();

    progress(&format!("{} seal", size_label(size)));
    let mut copy_buf = WorkBuf::away_from(&input);
    let mut cases = vec![
        raw_seal_case(RING, Ring::new(&key), &input),
        raw_seal_case(AWS_LC, AwsLc::new(&key), &input),
        raw_seal_case(RUSTCRYPTO, RustCrypto::new(&key), &input),
        fx.seal_case(SEALBOX, &input),
        fx.seal_case2(SEALBOX_S2, &input),
        raw_inplace_case(INPLACE, Ring::new(&key), &input),
        Case::new(MEMCPY, |n| {
            for _ in 0..n {
                let w = copy_buf.buf();
                w.copy_from_slice(black_box(&input));
                black_box(w);
            }
        }),
    ];
    let names = [
        RING, AWS_LC, RUSTCRYPTO, SEALBOX, SEALBOX_S2, INPLACE, MEMCPY,
    ];
    cells.extend(cells_of(
        (size, Op::Seal),
        &names,
        measure(&mut cases, cfg),
        totals,
    ));
    drop(cases);

    progress(&format!("{} open", size_label(size)));
    let mut cases = vec![
        raw_open_case(RING, Ring::new(&key), &input),
        raw_open_case(AWS_LC, AwsLc::new(&key), &input),
        raw_open_case(RUSTCRYPTO, RustCrypto::new(&key), &input),
        fx.open_case(SEALBOX, &envelope),
        fx.open_case(SEALBOX_S2, &envelope2),
    ];
    let names = [RING, AWS_LC, RUSTCRYPTO, SEALBOX, SEALBOX_S2];
    cells.extend(cells_of(
        (size, Op::Open),
        &names,
        measure(&mut cases, cfg),
        totals,
    ));
    cells
}

/// One measured group's results as cells (names in the order of its cases), its time added
/// to the run's totals.
fn cells_of(
    (size, op): (usize, Op),
    names: &[&'static str],
    stats: Vec<Stats>,
    totals: &mut (Duration, Duration),
) -> Vec<Cell> {
    let mut cells = Vec::with_capacity(names.len());
    for (name, stats) in names.iter().zip(stats) {
        totals.0 += stats.cpu;
        totals.1 += stats.wall;
        cells.push(Cell {
            size,
            op,
            name,
            stats,
        });
    }
    cells
}

pub(crate) fn cell<'c>(cells: &'c [Cell], size: usize, op: Op, name: &str) -> &'c Cell {
    cells
        .iter()
        .find(|c| c.size == size && c.op == op && c.name == name)
        .unwrap_or_else(|| panic!("no cell {size} {op:?} {name}"))
}

/// The fastest raw peer at (size, op).
pub(crate) fn fastest_raw<'c>(cells: &'c [Cell], size: usize, op: Op) -> &'c Cell {
    RAW.iter()
        .map(|n| cell(cells, size, op, n))
        .min_by(|a, b| a.stats.median_ns.total_cmp(&b.stats.median_ns))
        .expect("three peers")
}

/// Throughput ratio of `c` to the fastest raw peer (1.00× = as fast).
pub(crate) fn ratio_to_fastest(cells: &[Cell], c: &Cell) -> f64 {
    fastest_raw(cells, c.size, c.op).stats.median_ns / c.stats.median_ns
}

pub(crate) fn with_spread(s: &Stats) -> String {
    format!("{} (±{:.0}%)", ns(s.median_ns), s.spread_pct())
}
