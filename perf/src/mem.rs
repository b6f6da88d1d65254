//! Peak memory of one seal, one open or one round trip of a large payload, measured in a
//! child process that does only that (the parent re-executes its own binary as
//! `sealbox-perf mem OP BYTES`).
//!
//! The child sets up a warm key-ring, reads its resident set size (`rss0`), prepares the
//! operation's input (the plaintext for seal and round trip; for open, an envelope sealed
//! from a plaintext that is then freed), resets the kernel's high-water mark
//! (`/proc/self/clear_refs` ← `5`), reads `VmRSS` (`before`), runs the operation with every
//! buffer it returns kept alive, and reads `VmHWM` (`hwm`). A counting allocator records the
//! heap bytes the operation itself allocated at its peak.

use std::hint::black_box;
use std::sync::Arc;

use sealbox_core::EncryptionContext;
use sealbox_keyring::Keyring;
use sealbox_local::LocalKek;

use crate::alloc;

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

/// Resets VmHWM to the current RSS. `false` when the kernel refused.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Deterministic bytes from splitmix64, 8 per step, so inputs are neither zeros nor alike
/// from one seed to the next.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `op` with VmHWM reset and the allocation counter on: (VmRSS before, VmHWM after,
/// heap bytes allocated at the peak, whether the reset worked, `op`'s output).
async fn peak_of<T>(op: impl std::future::Future<Output = T>) -> (u64, u64, usize, bool, T) {
    let reset = reset_hwm();
    let before = status_kb("VmRSS:");
    alloc::start();
    let out = op.await;
    let (hwm, peak) = (status_kb("VmHWM:"), alloc::peak());
    (before, hwm, peak, reset, out)
}

/// Runs in the child; prints `key=value` lines for the parent.
pub fn child(op: &str, size: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let kek = Arc::new(LocalKek::generate("dev").expect("local KEK"));
    let keyring = Keyring::builder(kek).build().expect("key-ring");
    let ctx = EncryptionContext::new()
        .with("namespace", "default")
        .expect("context");
    rt.block_on(async {
        let warm = keyring.seal(&ctx, b"warm").await.expect("seal");
        keyring.open(&ctx, &warm).await.expect("open");
    });
    let rss0 = status_kb("VmRSS:");
    let (before, hwm, heap_peak, reset, ok) = rt.block_on(async {
        match op {
            "seal" => {
                let input = pattern(size, 1);
                let (before, hwm, peak, reset, env) = peak_of(keyring.seal(&ctx, &input)).await;
                let env = env.expect("seal");
                black_box((&input, &env));
                (before, hwm, peak, reset, env.len() > size)
            }
            "open" => {
                let env = {
                    let input = pattern(size, 1);
                    keyring.seal(&ctx, &input).await.expect("seal")
                };
                let (before, hwm, peak, reset, out) = peak_of(keyring.open(&ctx, &env)).await;
                let out = out.expect("open");
                black_box((&env, &out));
                (before, hwm, peak, reset, out.len() == size)
            }
            "roundtrip" => {
                let input = pattern(size, 1);
                let (before, hwm, peak, reset, (env, out)) = peak_of(async {
                    let env = keyring.seal(&ctx, &input).await.expect("seal");
                    let out = keyring.open(&ctx, &env).await.expect("open");
                    (env, out)
                })
                .await;
                let ok = out == input;
                black_box((&input, &env, &out));
                (before, hwm, peak, reset, ok)
            }
            other => panic!("unknown memory operation {other}"),
        }
    });
    assert!(ok, "{op} of {size} bytes produced a wrong result");
    println!("rss0_kb={rss0}");
    println!("before_kb={before}");
    println!("hwm_kb={hwm}");
    println!("heap_peak_bytes={heap_peak}");
    println!("hwm_reset={reset}");
}

/// What the parent reads back from one child.
#[derive(Debug, Clone)]
pub struct MemResult {
    pub rss0_kb: u64,
    pub before_kb: u64,
    pub hwm_kb: u64,
    pub heap_peak_bytes: u64,
    pub hwm_reset: bool,
}

impl MemResult {
    /// Input bytes resident before the operation (plaintext or envelope), from RSS.
    pub fn input_bytes(&self) -> u64 {
        self.before_kb.saturating_sub(self.rss0_kb) * 1024
    }
    /// Peak resident bytes the operation added on top of its input.
    pub fn extra_bytes(&self) -> u64 {
        self.hwm_kb.saturating_sub(self.before_kb) * 1024
    }
    /// Input plus the operation's peak, as resident bytes above the warm process.
    pub fn total_bytes(&self) -> u64 {
        self.hwm_kb.saturating_sub(self.rss0_kb) * 1024
    }
}

/// Runs `sealbox-perf mem OP SIZE` as a child and parses its report.
pub fn run_child(op: &str, size: usize) -> Result<MemResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["mem", op, &size.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "child `mem {op} {size}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| -> Result<String, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
            .ok_or_else(|| format!("child `mem {op}` printed no {k}"))
    };
    let num = |k: &str| -> Result<u64, String> { get(k)?.parse().map_err(|_| format!("bad {k}")) };
    Ok(MemResult {
        rss0_kb: num("rss0_kb")?,
        before_kb: num("before_kb")?,
        hwm_kb: num("hwm_kb")?,
        heap_peak_bytes: num("heap_peak_bytes")?,
        hwm_reset: get("hwm_reset")? == "true",
    })
}
