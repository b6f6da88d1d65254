//! Timing: interleaved batches, thread CPU time, medians.
//!
//! Every case of a group is a closure that performs `n` operations. The runner calibrates a
//! batch size per case (about `batch` of work), then runs the cases round-robin — one batch
//! of each case per round — until every case has at least `min_batches` batches *and* at
//! least `min_time` of work. Interleaving matters on a shared machine: a burst of load from
//! another process then hits every case of the group alike, so the ratios between them (the
//! figures that matter) move less than the absolute times.
//!
//! The clock is the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, user + system), not
//! wall time: time the harness spends descheduled while another process runs is not counted.
//! Wall time is recorded beside it, and `cpu / wall` over a run says how contended it was.

use std::time::{Duration, Instant};

/// The calling thread's CPU time (user + system).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Target CPU time of one batch.
    pub batch: Duration,
    /// Least total CPU time per case.
    pub min_time: Duration,
    /// Least number of batches per case.
    pub min_batches: usize,
    /// Most batches per case (a cap for cases whose batches come out short).
    pub max_batches: usize,
}

impl Config {
    /// The default: batches of ≈ 0.1 s, ≥ 5 batches and ≥ 0.5 s per case.
    pub fn standard() -> Self {
        Self {
            batch: Duration::from_millis(100),
            min_time: Duration::from_millis(500),
            min_batches: 5,
            max_batches: 40,
        }
    }

    /// A smoke test: 10 ms batches, ≥ 3 batches, ≥ 30 ms. Figures are not meaningful.
    pub fn quick() -> Self {
        Self {
            batch: Duration::from_millis(10),
            min_time: Duration::from_millis(30),
            min_batches: 3,
            max_batches: 10,
        }
    }
}

/// One measured case: a name and a closure performing `n` operations.
pub struct Case<'a> {
    pub name: String,
    pub run: Box<dyn FnMut(u64) + 'a>,
}

impl<'a> Case<'a> {
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) + 'a) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Median over batches of CPU ns per operation.
    pub median_ns: f64,
    /// First and third quartile of the batches' ns per operation.
    pub q1_ns: f64,
    pub q3_ns: f64,
    /// Batches timed (after calibration, which is not counted).
    pub batches: usize,
    /// Operations per batch.
    pub ops_per_batch: u64,
    /// Total CPU and wall time of the timed batches.
    pub cpu: Duration,
    pub wall: Duration,
}

impl Stats {
    /// Half the interquartile range relative to the median, in percent.
    pub fn spread_pct(&self) -> f64 {
        if self.median_ns > 0.0 {
            50.0 * (self.q3_ns - self.q1_ns) / self.median_ns
        } else {
            0.0
        }
    }

    /// Payload throughput in MB/s (10^6 bytes per second) for `bytes` per operation.
    pub fn mb_per_s(&self, bytes: usize) -> f64 {
        bytes as f64 / self.median_ns * 1e3
    }
}

fn time_batch(run: &mut dyn FnMut(u64), n: u64) -> (Duration, Duration) {
    let wall = Instant::now();
    let cpu = thread_cpu();
    run(n);
    let cpu = thread_cpu() - cpu;
    (cpu, wall.elapsed())
}

/// Operations per batch for about `cfg.batch` of CPU time (the calibration runs also warm
/// caches, the branch predictor and allocator).
fn calibrate(run: &mut dyn FnMut(u64), cfg: &Config) -> u64 {
    let probe_target = cfg.batch / 10;
    let mut n: u64 = 1;
    loop {
        let (cpu, _) = time_batch(run, n);
        if cpu >= probe_target || n >= 1 << 32 {
            let per_op = cpu.as_secs_f64() / n as f64;
            return ((cfg.batch.as_secs_f64() / per_op.max(1e-12)).ceil() as u64).max(1);
        }
        n = if cpu.is_zero() {
            n * 10
        } else {
            // Aim a little past the probe target so this loop ends in few steps.
            let want = probe_target.as_secs_f64() * 1.5 / cpu.as_secs_f64() * n as f64;
            (want.ceil() as u64).clamp(n + 1, n * 100)
        };
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Measures a group of cases, interleaved. Results are in the order of `cases`.
pub fn measure(cases: &mut [Case<'_>], cfg: &Config) -> Vec<Stats> {
    let per_batch: Vec<u64> = cases
        .iter_mut()
        .map(|c| calibrate(&mut c.run, cfg))
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut cpu = vec![Duration::ZERO; cases.len()];
    let mut wall = vec![Duration::ZERO; cases.len()];
    loop {
        let mut ran = false;
        for (i, case) in cases.iter_mut().enumerate() {
            let done = samples[i].len() >= cfg.max_batches
                || (samples[i].len() >= cfg.min_batches && cpu[i] >= cfg.min_time);
            if done {
                continue;
            }
            ran = true;
            let (c, w) = time_batch(&mut case.run, per_batch[i]);
            samples[i].push(c.as_nanos() as f64 / per_batch[i] as f64);
            cpu[i] += c;
            wall[i] += w;
        }
        if !ran {
            break;
        }
    }
    let verbose = std::env::var_os("SEALBOX_PERF_VERBOSE").is_some();
    samples
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            if verbose {
                eprintln!(
                    "  {}: {} batches of {} ops: {:?}",
                    cases[i].name,
                    s.len(),
                    per_batch[i],
                    s
                );
            }
            s.sort_by(f64::total_cmp);
            Stats {
                median_ns: quantile(&s, 0.5),
                q1_ns: quantile(&s, 0.25),
                q3_ns: quantile(&s, 0.75),
                batches: s.len(),
                ops_per_batch: per_batch[i],
                cpu: cpu[i],
                wall: wall[i],
            }
        })
        .collect()
}
