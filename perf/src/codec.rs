//! Section 3: codec server CPU per request, Sealbox (`sealbox serve`, release build) beside an
//! equivalent of Temporal's Python sample encryption codec server
//! (`perf/python_codec_server.py`), on loopback.
//!
//! Both servers run as child processes of the harness, the load generator runs in the harness
//! (one thread, a current-thread tokio runtime, hyper's HTTP/1.1 connection API, keep-alive).
//! For 1, 10 and 100 payloads per request, the request body is made once: ≈ 1 KiB `json/plain`
//! payloads, sent through each server's own `/encode`, the answer re-serialized as compact
//! JSON. Then `/decode` is driven with 16 connections, each sending its next request as soon
//! as the previous answer arrived (closed loop), for a fixed wall time per case, the cases
//! interleaved (Python N=1, Sealbox N=1, Sealbox with the audit log to /dev/null N=1, Python
//! N=10, …), in rounds. The headline is the server process's CPU time (user + system from
//! `/proc/PID/stat`, all threads) over the case ÷ requests: on a machine whose cores are
//! shared with the load generator and other work, wall-clock rates depend on the neighbours,
//! CPU per request much less. Every answer's status is checked, and a sample of answers is
//! decoded and compared with the original payloads.
//!
//! A second test sends `/decode` at a fixed rate (1,000 requests per second, open loop: a
//! request is sent on schedule whether or not earlier ones have been answered) to measure the
//! latency a server gives at that load (target: p99 < 5 ms for Sealbox at 1 payload).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::fmt::{Table, int};
use crate::measure::thread_cpu;
use crate::{Report, loadavg, progress};

/// Payloads per request (1, 10 and 100 for section 3's targets; 1,000 completes section 6's
/// curve of CPU against payloads per request).
const SIZES: [usize; 4] = [1, 10, 100, 1_000];
/// Connections of the closed-loop load generator.
const CONCURRENCY: usize = 16;
/// Length of each payload's data: a JSON string of this many bytes, quotes included.
const PAYLOAD_BYTES: usize = 1024;
/// The fixed-rate test.
const FIXED_RATE: u32 = 1_000;
const FIXED_RATE_PAYLOADS: usize = 1;
/// Issue #16's targets.
const TARGET_RATIO: f64 = 10.0;
const TARGET_P99_MS: f64 = 5.0;

/// What the harness needs from its caller (scripts/perf.sh sets these).
pub struct Setup {
    pub sealbox: PathBuf,
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Setup {
    /// From `SEALBOX_PERF_SEALBOX_BIN`, `SEALBOX_PERF_PYTHON` and `SEALBOX_PERF_PY_SERVER`;
    /// `Err` says why section 3 cannot run.
    pub fn from_env() -> Result<Self, String> {
        Ok(Self {
            sealbox: crate::program_from_env("SEALBOX_PERF_SEALBOX_BIN")?,
            python: crate::program_from_env("SEALBOX_PERF_PYTHON")?,
            script: crate::program_from_env("SEALBOX_PERF_PY_SERVER")?,
        })
    }
}

/// How long to measure.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Wall time of one closed-loop case in one round.
    pub case: Duration,
    /// Unmeasured warm-up before each case.
    pub warmup: Duration,
    pub rounds: usize,
    /// Wall time of each fixed-rate test.
    pub fixed: Duration,
}

impl Plan {
    pub fn standard() -> Self {
        Self {
            case: Duration::from_secs(6),
            warmup: Duration::from_millis(500),
            rounds: 2,
            fixed: Duration::from_secs(10),
        }
    }
    pub fn quick() -> Self {
        Self {
            case: Duration::from_millis(500),
            warmup: Duration::from_millis(100),
            rounds: 1,
            fixed: Duration::from_secs(1),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server processes.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Python,
    /// Sealbox, audit log to a file (as configured in production).
    Sealbox,
    /// Sealbox, audit log to /dev/null (the audit line is still formatted and written).
    SealboxNullAudit,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Python => "Python sample (equivalent)",
            Kind::Sealbox => "Sealbox",
            Kind::SealboxNullAudit => "Sealbox, audit_log = /dev/null",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Kind::Python => "python",
            Kind::Sealbox => "sealbox",
            Kind::SealboxNullAudit => "sealbox-audit-devnull",
        }
    }
}

const KINDS: [Kind; 3] = [Kind::Python, Kind::Sealbox, Kind::SealboxNullAudit];

struct Server {
    kind: Kind,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's CPU time (user, system), all threads.
    fn cpu(&self) -> (Duration, Duration) {
        proc_cpu(self.pid()).unwrap_or_else(|e| panic!("{}: {e}", self.kind.label()))
    }

    /// Peak resident memory (VmHWM), KiB.
    fn hwm_kb(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn threads(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (utime, stime) of a process from /proc/PID/stat, clock ticks converted to time.
pub(crate) fn proc_cpu(pid: u32) -> Result<(Duration, Duration), String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("read /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = &stat[stat.rfind(')').ok_or("malformed /proc/PID/stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f[11].parse().map_err(|_| "utime")?;
    let stime: u64 = f[12].parse().map_err(|_| "stime")?;
    let ticks = clk_tck();
    let t = |v: u64| Duration::from_secs_f64(v as f64 / ticks as f64);
    Ok((t(utime), t(stime)))
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf with a valid name has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// A free loopback port, never the same twice in this process (the kernel may hand a
/// just-released port out again; a server given two equal ports fails to start).
pub(crate) fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if GIVEN.lock().map_or(true, |mut given| given.insert(port)) {
            return port;
        }
    }
}

fn start_python(setup: &Setup, dir: &Path) -> Result<Server, String> {
    let port = free_port();
    let log = dir.join("python.log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(&setup.python)
        .arg(&setup.script)
        .arg(port.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("start {}: {e}", setup.python.display()))?;
    Ok(Server {
        kind: Kind::Python,
        child,
        port,
        log,
    })
}

/// The policy the harness gives `sealbox serve`: a local KEK from a key file, anonymous
/// encode/decode on loopback, the audit log where `audit` says.
fn sealbox_policy(kek_file: &Path, audit: &str, port: u16) -> String {
    format!(
        "# Written by the performance harness (perf/src/codec.rs) for one run.\n\
         version = 1\n\n\
         [default]\n\
         active = \"local:///perf?file={}\"\n\n\
         [server]\n\
         listen = \"127.0.0.1:{port}\"\n\
         anonymous = [\"encode\", \"decode\"]\n\
         audit_log = \"{audit}\"\n",
        kek_file.display()
    )
}

fn start_sealbox(setup: &Setup, dir: &Path, kind: Kind) -> Result<(Server, String), String> {
    let kek_file = dir.join("perf.kek");
    if !kek_file.exists() {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| e.to_string())?;
        write_private(&kek_file, format!("{}\n", B64.encode(key)).as_bytes())?;
    }
    let port = free_port();
    let audit = match kind {
        Kind::SealboxNullAudit => "/dev/null".to_owned(),
        _ => dir.join("audit.log").display().to_string(),
    };
    let policy = sealbox_policy(&kek_file, &audit, port);
    let policy_file = dir.join(format!("{}.toml", kind.key()));
    std::fs::write(&policy_file, &policy).map_err(|e| e.to_string())?;
    let log = dir.join(format!("{}.log", kind.key()));
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(&setup.sealbox)
        .arg("serve")
        .arg("--config")
        .arg(&policy_file)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .env_remove("SEALBOX_LOG")
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("start {}: {e}", setup.sealbox.display()))?;
    Ok((
        Server {
            kind,
            child,
            port,
            log,
        },
        policy,
    ))
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// HTTP client.

pub(crate) type Sender = SendRequest<Full<Bytes>>;

pub(crate) async fn connect(port: u16) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

pub(crate) async fn post(
    sender: &mut Sender,
    port: u16,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let req = hyper::Request::post(path)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("x-namespace", "default")
        .body(Full::new(body));
    send(sender, port, req).await
}

/// Sends `req` (with a `Host` header for `port`) and reads the whole answer.
pub(crate) async fn send(
    sender: &mut Sender,
    port: u16,
    req: Result<hyper::Request<Full<Bytes>>, hyper::http::Error>,
) -> Result<(u16, Bytes), String> {
    let mut req = req.map_err(|e| e.to_string())?;
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let host = hyper::header::HeaderValue::from_str(&format!("127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(hyper::header::HOST, host);
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{method} {path}: body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// A current-thread runtime with a LocalSet: the load generator is one thread.
pub(crate) fn block_on<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    tokio::task::LocalSet::new().block_on(rt, f)
}

async fn wait_ready(server: &mut Server) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "{} exited ({status}) before answering; its log:\n{}",
                server.kind.label(),
                std::fs::read_to_string(&server.log).unwrap_or_default()
            ));
        }
        if let Ok(mut s) = connect(server.port).await
            && let Ok((200, _)) = post(
                &mut s,
                server.port,
                "/encode",
                Bytes::from_static(b"{\"payloads\":[]}"),
            )
            .await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not answer within 60 s; its log:\n{}",
                server.kind.label(),
                std::fs::read_to_string(&server.log).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Workload.

/// One payload as a client knows it: metadata values and data, decoded.
#[derive(PartialEq, Eq, Debug, Clone)]
struct Plain {
    metadata: BTreeMap<String, Vec<u8>>,
    data: Vec<u8>,
}

/// `n` payloads of ≈ 1 KiB each: `json/plain`, data a JSON string of PAYLOAD_BYTES bytes.
fn plaintexts(n: usize) -> Vec<Plain> {
    (0..n)
        .map(|i| {
            let mut s = format!("\"payload {i} of {n}: ");
            let filler = "The quick brown fox jumps over the lazy dog. ";
            while s.len() < PAYLOAD_BYTES - 1 {
                s.push_str(filler);
            }
            s.truncate(PAYLOAD_BYTES - 1);
            s.push('"');
            Plain {
                metadata: BTreeMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
                data: s.into_bytes(),
            }
        })
        .collect()
}

fn payloads_json(p: &[Plain]) -> Bytes {
    let arr: Vec<serde_json::Value> = p
        .iter()
        .map(|p| {
            let md: serde_json::Map<String, serde_json::Value> = p
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(B64.encode(v))))
                .collect();
            serde_json::json!({"metadata": md, "data": B64.encode(&p.data)})
        })
        .collect();
    Bytes::from(serde_json::to_vec(&serde_json::json!({ "payloads": arr })).expect("json"))
}

fn parse_payloads(body: &[u8]) -> Result<Vec<Plain>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let arr = match v.get("payloads") {
        Some(serde_json::Value::Array(a)) => a.as_slice(),
        None => &[],
        _ => return Err("`payloads` is not an array".into()),
    };
    arr.iter()
        .map(|p| {
            let mut metadata = BTreeMap::new();
            if let Some(md) = p.get("metadata").and_then(|m| m.as_object()) {
                for (k, v) in md {
                    let s = v.as_str().ok_or("metadata value is not a string")?;
                    metadata.insert(k.clone(), B64.decode(s).map_err(|e| e.to_string())?);
                }
            }
            let data = match p.get("data").and_then(|d| d.as_str()) {
                Some(s) => B64.decode(s).map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            Ok(Plain { metadata, data })
        })
        .collect()
}

/// The `/decode` body for one server and size: the plaintexts sent through its own `/encode`,
/// checked to be encrypted and re-serialized as compact JSON.
async fn encoded_body(port: u16, label: &str, plain: &[Plain]) -> Result<(Bytes, usize), String> {
    let mut s = connect(port).await?;
    let (status, body) = post(&mut s, port, "/encode", payloads_json(plain)).await?;
    if status != 200 {
        return Err(format!(
            "{} /encode answered {status}: {}",
            label,
            String::from_utf8_lossy(&body)
        ));
    }
    let sealed = parse_payloads(&body)?;
    if sealed.len() != plain.len() {
        return Err(format!(
            "{} /encode returned {} payloads for {}",
            label,
            sealed.len(),
            plain.len()
        ));
    }
    for (i, p) in sealed.iter().enumerate() {
        if p.metadata.get("encoding").map(Vec::as_slice) != Some(b"binary/encrypted".as_slice()) {
            return Err(format!(
                "{} /encode: payload {i} is not binary/encrypted",
                label
            ));
        }
        if p.data.windows(20).any(|w| w == &plain[i].data[1..21]) {
            return Err(format!(
                "{} /encode: payload {i} contains its plaintext",
                label
            ));
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let compact = Bytes::from(serde_json::to_vec(&v).expect("json"));
    // The compact body must decode to the plaintexts.
    let (status, out) = post(&mut s, port, "/decode", compact.clone()).await?;
    if status != 200 || parse_payloads(&out)? != plain {
        return Err(format!(
            "{} /decode of its own /encode answer did not give the plaintexts back ({status})",
            label
        ));
    }
    let envelope_bytes = sealed.iter().map(|p| p.data.len()).sum::<usize>() / sealed.len();
    Ok((compact, envelope_bytes))
}

/// What one load test saw.
#[derive(Default, Clone)]
struct Sample {
    requests: u64,
    errors: u64,
    checked: u64,
    check_failures: u64,
    first_error: Option<String>,
    wall: Duration,
    /// User + system time of the server process.
    server_cpu: Duration,
    /// Of which system time.
    server_sys: Duration,
    client_cpu: Duration,
    /// Latency of every request, ns (closed loop: send to answer; fixed rate: send to answer).
    lat: Vec<u64>,
    /// Fixed rate only: scheduled send time to answer, ns (includes the generator's lateness).
    lat_sched: Vec<u64>,
}

impl Sample {
    fn merge(&mut self, o: &Sample) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.checked += o.checked;
        self.check_failures += o.check_failures;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        self.wall += o.wall;
        self.server_cpu += o.server_cpu;
        self.server_sys += o.server_sys;
        self.client_cpu += o.client_cpu;
        self.lat.extend_from_slice(&o.lat);
        self.lat_sched.extend_from_slice(&o.lat_sched);
    }
    fn sys_share(&self) -> f64 {
        self.server_sys.as_secs_f64() / self.server_cpu.as_secs_f64().max(1e-9)
    }
    fn cpu_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
    fn client_cpu_us(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
    fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    /// Cores the server used on average: CPU ÷ wall.
    fn cores(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Nearest-rank percentile (p in 0..=100) of unsorted ns values, in ms.
fn pct_ms(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1] as f64 / 1e6
}

/// Shared by the load-generator tasks.
struct Shared {
    expected: Vec<Plain>,
    sample: Sample,
    /// Check one answer in every `check_every` (and each connection's first).
    check_every: u64,
}

impl Shared {
    fn record(&mut self, res: Result<(u16, Bytes), String>, first: bool) {
        self.sample.requests += 1;
        match res {
            Ok((200, body)) => {
                if first || self.sample.requests.is_multiple_of(self.check_every) {
                    self.sample.checked += 1;
                    match parse_payloads(&body) {
                        Ok(p) if p == self.expected => {}
                        Ok(_) => {
                            self.fail("an answer did not decode to the original payloads".into())
                        }
                        Err(e) => self.fail(e),
                    }
                }
            }
            Ok((status, body)) => {
                self.sample.errors += 1;
                if self.sample.first_error.is_none() {
                    self.sample.first_error = Some(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ));
                }
            }
            Err(e) => {
                self.sample.errors += 1;
                if self.sample.first_error.is_none() {
                    self.sample.first_error = Some(e);
                }
            }
        }
    }
    fn fail(&mut self, e: String) {
        self.sample.check_failures += 1;
        if self.sample.first_error.is_none() {
            self.sample.first_error = Some(e);
        }
    }
}

/// Where a load test sends its requests, and whose CPU time it reads.
#[derive(Clone, Copy)]
struct Target {
    port: u16,
    /// The server's process ID; `None`: CPU time not read.
    pid: Option<u32>,
}

impl Server {
    fn target(&self) -> Target {
        Target {
            port: self.port,
            pid: Some(self.pid()),
        }
    }
}

impl Target {
    fn cpu(&self) -> Result<(Duration, Duration), String> {
        match self.pid {
            Some(pid) => proc_cpu(pid),
            None => Ok((Duration::ZERO, Duration::ZERO)),
        }
    }
}

/// How a closed loop stops: after `duration`, or after `max_requests` sent, whichever first.
#[derive(Clone, Copy)]
struct Stop {
    duration: Duration,
    max_requests: Option<u64>,
}

/// Closed loop: `concurrency` connections, each sending its next `/decode` when the last was
/// answered, until `stop`; then waits for the requests in flight. Server CPU is read once the
/// connections are open, and again after the last answer.
async fn closed_loop(
    target: Target,
    body: &Bytes,
    expected: &[Plain],
    stop: Stop,
    concurrency: usize,
) -> Result<Sample, String> {
    let port = target.port;
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(connect(port).await?);
    }
    let shared = Rc::new(RefCell::new(Shared {
        expected: expected.to_vec(),
        sample: Sample::default(),
        check_every: 499,
    }));
    let sent = Rc::new(std::cell::Cell::new(0u64));
    let limit = stop.max_requests.unwrap_or(u64::MAX);
    let cpu0 = target.cpu()?;
    let client0 = thread_cpu();
    let start = Instant::now();
    let deadline = start + stop.duration;
    let mut tasks = Vec::new();
    for mut conn in conns {
        let shared = shared.clone();
        let sent = sent.clone();
        let body = body.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut first = true;
            let mut lat = Vec::new();
            while Instant::now() < deadline && sent.get() < limit {
                sent.set(sent.get() + 1);
                let t = Instant::now();
                let res = post(&mut conn, port, "/decode", body.clone()).await;
                lat.push(t.elapsed().as_nanos() as u64);
                let broken = res.is_err();
                shared.borrow_mut().record(res, first);
                first = false;
                if broken {
                    match connect(port).await {
                        Ok(c) => conn = c,
                        Err(_) => break,
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())?);
    }
    let wall = start.elapsed();
    let client_cpu = thread_cpu() - client0;
    let cpu1 = target.cpu()?;
    let mut sample = std::mem::take(&mut shared.borrow_mut().sample);
    sample.wall = wall;
    sample.server_cpu = (cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1);
    sample.server_sys = cpu1.1 - cpu0.1;
    sample.client_cpu = client_cpu;
    sample.lat = lat;
    Ok(sample)
}

/// Open loop at `rate` requests per second for `duration`: request i is sent at start + i/rate
/// on an idle connection (a new one if none is idle), whether or not earlier requests have
/// been answered.
async fn fixed_rate(
    server: &Server,
    body: &Bytes,
    expected: &[Plain],
    rate: u32,
    duration: Duration,
) -> Result<Sample, String> {
    let port = server.port;
    let pool: Rc<RefCell<Vec<Sender>>> = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..8 {
        let c = connect(port).await?;
        pool.borrow_mut().push(c);
    }
    let shared = Rc::new(RefCell::new(Shared {
        expected: expected.to_vec(),
        sample: Sample::default(),
        check_every: 499,
    }));
    let lat = Rc::new(RefCell::new((Vec::new(), Vec::new())));
    let n = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let cpu0 = server.cpu();
    let client0 = thread_cpu();
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let sched = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(sched.into()).await;
        let pool = pool.clone();
        let shared = shared.clone();
        let lat = lat.clone();
        let body = body.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let sent = Instant::now();
            let idle = pool.borrow_mut().pop();
            let conn = match idle {
                Some(c) => Ok(c),
                None => connect(port).await,
            };
            let (res, conn) = match conn {
                Ok(mut c) => (post(&mut c, port, "/decode", body).await, Some(c)),
                Err(e) => (Err(e), None),
            };
            let done = Instant::now();
            {
                let mut l = lat.borrow_mut();
                l.0.push((done - sent).as_nanos() as u64);
                l.1.push((done - sched).as_nanos() as u64);
            }
            let ok = res.is_ok();
            shared.borrow_mut().record(res, i == 0);
            if ok && let Some(c) = conn {
                pool.borrow_mut().push(c);
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let wall = start.elapsed();
    let client_cpu = thread_cpu() - client0;
    let cpu1 = server.cpu();
    let mut sample = std::mem::take(&mut shared.borrow_mut().sample);
    let (l, ls) = std::mem::take(&mut *lat.borrow_mut());
    sample.wall = wall;
    sample.server_cpu = (cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1);
    sample.server_sys = cpu1.1 - cpu0.1;
    sample.client_cpu = client_cpu;
    sample.lat = l;
    sample.lat_sched = ls;
    Ok(sample)
}

// ---------------------------------------------------------------------------------------------
// The section.

fn us(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v < 100.0 {
        format!("{v:.1} µs")
    } else {
        format!("{} µs", int(v))
    }
}

fn lat3(s: &Sample) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} ms",
        pct_ms(&s.lat, 50.0),
        pct_ms(&s.lat, 99.0),
        pct_ms(&s.lat, 99.9)
    )
}

fn csv_row(csv: &mut String, test: &str, round: &str, kind: Kind, n: usize, s: &Sample) {
    let _ = writeln!(
        csv,
        "{test},{round},{},{n},{},{},{},{},{:.3},{:.2},{:.2},{:.2},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3},{},{:.2}",
        kind.key(),
        s.requests,
        s.errors,
        s.checked,
        s.check_failures,
        s.wall.as_secs_f64(),
        s.server_cpu.as_secs_f64(),
        s.server_sys.as_secs_f64(),
        s.cpu_us(),
        s.rate(),
        s.cores(),
        pct_ms(&s.lat, 50.0),
        pct_ms(&s.lat, 99.0),
        pct_ms(&s.lat, 99.9),
        pct_ms(&s.lat, 100.0),
        if s.lat_sched.is_empty() {
            String::new()
        } else {
            format!("{:.3}", pct_ms(&s.lat_sched, 99.0))
        },
        s.client_cpu_us(),
    );
}

/// Runs section 3 and writes its tables into `report`; returns the CSV.
pub fn section3(
    setup: &Setup,
    plan: Plan,
    quick: bool,
    out_dir: &Path,
    report: &mut Report,
) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("sealbox-perf-codec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_section(setup, plan, quick, report, &dir, out_dir);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "[perf] section 3 failed; its scratch directory is kept: {}",
            dir.display()
        );
    }
    result
}

fn run_section(
    setup: &Setup,
    plan: Plan,
    quick: bool,
    report: &mut Report,
    dir: &Path,
    out_dir: &Path,
) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let load_start = loadavg();
    progress("section 3: starting the Python sample equivalent and two Sealbox servers");
    let mut servers = vec![start_python(setup, dir)?];
    let (sb, policy) = start_sealbox(setup, dir, Kind::Sealbox)?;
    servers.push(sb);
    servers.push(start_sealbox(setup, dir, Kind::SealboxNullAudit)?.0);
    for s in &mut servers {
        block_on(&rt, wait_ready(s))?;
    }
    let versions = python_versions(setup);

    // Request bodies: per size and server, through that server's own /encode.
    let mut bodies: BTreeMap<(usize, usize), Bytes> = BTreeMap::new();
    let mut envelope = BTreeMap::new();
    let plains: BTreeMap<usize, Vec<Plain>> = SIZES.iter().map(|&n| (n, plaintexts(n))).collect();
    for &n in &SIZES {
        for (i, s) in servers.iter().enumerate() {
            let (b, env) = block_on(&rt, encoded_body(s.port, s.kind.label(), &plains[&n]))?;
            envelope.insert(s.kind.key(), env);
            bodies.insert((n, i), b);
        }
    }
    let plain_req = payloads_json(&plains[&1]).len();

    // Closed loop, interleaved, in rounds.
    let mut csv = String::from(
        "test,round,server,payloads_per_request,requests,errors,answers_checked,check_failures,wall_s,server_cpu_s,server_sys_s,\
         server_cpu_us_per_request,requests_per_s,server_cores,p50_ms,p99_ms,p999_ms,max_ms,p99_from_schedule_ms,\
         client_cpu_us_per_request\n",
    );
    let mut pooled: BTreeMap<(usize, usize), Sample> = BTreeMap::new();
    let mut per_round: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for round in 1..=plan.rounds {
        for &n in &SIZES {
            for (i, s) in servers.iter().enumerate() {
                progress(&format!(
                    "section 3: round {round}/{}, {n} payload(s)/request, {}",
                    plan.rounds,
                    s.kind.label()
                ));
                let body = &bodies[&(n, i)];
                let run = |duration| {
                    let stop = Stop {
                        duration,
                        max_requests: None,
                    };
                    block_on(
                        &rt,
                        closed_loop(s.target(), body, &plains[&n], stop, CONCURRENCY),
                    )
                };
                run(plan.warmup)?;
                let sample = run(plan.case)?;
                csv_row(
                    &mut csv,
                    "closed-loop-c16",
                    &round.to_string(),
                    s.kind,
                    n,
                    &sample,
                );
                per_round.entry((n, i)).or_default().push(sample.cpu_us());
                pooled.entry((n, i)).or_default().merge(&sample);
            }
        }
    }
    for (&(n, i), s) in &pooled {
        csv_row(&mut csv, "closed-loop-c16", "all", servers[i].kind, n, s);
    }

    // Fixed rate, 1 payload: Sealbox (audit to a file) and the Python equivalent.
    let mut fixed: Vec<(usize, Sample)> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        if s.kind == Kind::SealboxNullAudit {
            continue;
        }
        progress(&format!(
            "section 3: fixed rate {FIXED_RATE} req/s, {FIXED_RATE_PAYLOADS} payload/request, {}",
            s.kind.label()
        ));
        let body = &bodies[&(FIXED_RATE_PAYLOADS, i)];
        let sample = block_on(
            &rt,
            fixed_rate(
                s,
                body,
                &plains[&FIXED_RATE_PAYLOADS],
                FIXED_RATE,
                plan.fixed,
            ),
        )?;
        csv_row(
            &mut csv,
            "fixed-rate-1000",
            "1",
            s.kind,
            FIXED_RATE_PAYLOADS,
            &sample,
        );
        fixed.push((i, sample));
    }

    let audit_lines = std::fs::read_to_string(dir.join("audit.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let audit_example = std::fs::read_to_string(dir.join("audit.log"))
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| l.contains("\"decode\""))
                .map(str::to_owned)
        });
    let server_info: Vec<String> = servers
        .iter()
        .map(|s| {
            format!(
                "{}: peak RSS {} KiB, threads: {}",
                s.kind.label(),
                s.hwm_kb().map_or("?".into(), |v| int(v as f64)),
                s.threads().map_or("?".into(), |v| v.to_string())
            )
        })
        .collect();
    drop(servers);

    // Report.
    report.para(&format!(
        "Python peer: `perf/python_codec_server.py`, an **equivalent of Temporal's samples-python \
         `encryption/codec_server.py` + `codec.py` written for this harness** (the machine running it cannot \
         reach the sample's repository): aiohttp, protobuf JSON through `google.protobuf.json_format` and \
         `temporalio`'s `Payloads`, AES-256-GCM from `cryptography` under a fixed key, access log off; {versions}. \
         Sealbox: `sealbox serve` (`{}`, built by scripts/perf.sh with `cargo build --release`) with a local KEK from a key file, anonymous encode/decode \
         on loopback, and the audit log **to a file** (one JSON line per request, part of the cost as \
         configured) — and a second instance with `audit_log = \"/dev/null\"` to isolate the write to a file (it \
         still builds, serializes and writes each line). Policy:\n\n```toml\n{}```\n",
        setup.sealbox.display(),
        policy.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n") + "\n"
    ));
    report.para(&format!(
        "Workload: payloads of {PAYLOAD_BYTES} B (`json/plain`, data a JSON string; a 1-payload plaintext request \
         is {plain_req} B of JSON), sealed by each server's own `/encode`; envelope data per payload: Python \
         {} B, Sealbox {} B. `/decode` driven by {CONCURRENCY} keep-alive connections in a closed loop (each sends \
         its next request when the last is answered) from a one-thread hyper client in the harness, for {:.1} s \
         per case after {:.1} s of unmeasured warm-up, cases interleaved (Python, Sealbox, Sealbox /dev/null at 1 \
         payload, then at 10, then 100), {} round(s). **CPU/req** = the server process's user + system time \
         (`/proc/PID/stat`, all threads, {} ticks/s) over the case ÷ requests answered; req/s and latencies are \
         wall-clock, from the client (send → whole answer read). Each answer's status is checked, and one answer \
         in 499 plus each connection's first is decoded and compared with the original payloads.{}",
        envelope.get("python").copied().unwrap_or(0),
        envelope.get("sealbox").copied().unwrap_or(0),
        plan.case.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.rounds,
        clk_tck(),
        if quick { " **--quick: figures not meaningful.**" } else { "" }
    ));

    let py = 0usize;
    let sb = 1usize;
    let sbn = 2usize;
    let mut t = Table::new(&[
        "payloads/request",
        "Python CPU/req",
        "Sealbox CPU/req",
        "ratio (Python ÷ Sealbox)",
        "Python req/s",
        "Sealbox req/s",
        "Python p50 / p99 / p99.9",
        "Sealbox p50 / p99 / p99.9",
    ]);
    for &n in &SIZES {
        let (p, s) = (&pooled[&(n, py)], &pooled[&(n, sb)]);
        t.row(vec![
            n.to_string(),
            us(p.cpu_us()),
            us(s.cpu_us()),
            format!("{:.1}×", p.cpu_us() / s.cpu_us()),
            int(p.rate()),
            int(s.rate()),
            lat3(p),
            lat3(s),
        ]);
    }
    report.table(&t);
    let colors = [
        plotters::style::RGBColor(200, 120, 0),
        plotters::style::RGBColor(200, 30, 30),
        plotters::style::RGBColor(30, 60, 200),
    ];
    let lines: Vec<crate::plot::Line> = KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| crate::plot::Line {
            label: kind.label().to_owned(),
            color: colors[i],
            dashed: *kind == Kind::SealboxNullAudit,
            markers: true,
            points: SIZES
                .iter()
                .map(|&n| (n, pooled[&(n, i)].cpu_us() * 1e3))
                .collect(),
        })
        .collect();
    let plotted = crate::plot::codec_curve(
        &out_dir.join("codec_curve.svg"),
        "Codec server: CPU time per /decode request (1 KiB payloads)",
        &lines,
    );
    report.para(&format!(
        "Plot: `codec_curve.svg` (server CPU per request against payloads per request, log-log){}.",
        plotted
            .err()
            .map(|e| format!("; **plot error: {e}**"))
            .unwrap_or_default()
    ));

    let mut d = Table::new(&[
        "payloads/request",
        "server",
        "requests",
        "errors / check failures",
        "server CPU/req (per round)",
        "server CPU/req (all rounds)",
        "per payload",
        "of which kernel (stime)",
        "server cores used",
        "req/s",
        "p50 / p99 / p99.9",
        "client CPU/req",
    ]);
    for &n in &SIZES {
        for (i, kind) in KINDS.iter().enumerate() {
            let s = &pooled[&(n, i)];
            d.row(vec![
                n.to_string(),
                kind.label().to_owned(),
                int(s.requests as f64),
                format!(
                    "{} / {} (of {} checked)",
                    s.errors, s.check_failures, s.checked
                ),
                per_round[&(n, i)]
                    .iter()
                    .map(|v| us(*v))
                    .collect::<Vec<_>>()
                    .join(", "),
                us(s.cpu_us()),
                us(s.cpu_us() / n as f64),
                format!("{:.0}%", 100.0 * s.sys_share()),
                format!("{:.2}", s.cores()),
                int(s.rate()),
                lat3(s),
                us(s.client_cpu_us()),
            ]);
        }
    }
    report.say("Every server and size (rounds pooled: total CPU ÷ total requests; `cores used` = CPU ÷ wall):\n\n");
    report.table(&d);

    let mut a = Table::new(&[
        "payloads/request",
        "Sealbox, audit to a file",
        "Sealbox, audit to /dev/null",
        "difference (the audit write to a file)",
        "ratio to Python, audit to /dev/null",
    ]);
    for &n in &SIZES {
        let (f, z, p) = (&pooled[&(n, sb)], &pooled[&(n, sbn)], &pooled[&(n, py)]);
        a.row(vec![
            n.to_string(),
            us(f.cpu_us()),
            us(z.cpu_us()),
            us(f.cpu_us() - z.cpu_us()),
            format!("{:.1}×", p.cpu_us() / z.cpu_us()),
        ]);
    }
    report.say(
        "The audit line's share (the /dev/null instance still formats and writes each line):\n\n",
    );
    report.table(&a);

    let mut f = Table::new(&[
        "server (1 payload/request)",
        "requests",
        "errors",
        "achieved req/s",
        "p50 / p99 / p99.9",
        "max",
        "p99 from scheduled send",
        "server CPU/req",
        "server cores used",
    ]);
    for (i, s) in &fixed {
        f.row(vec![
            KINDS[*i].label().to_owned(),
            int(s.requests as f64),
            s.errors.to_string(),
            int(s.rate()),
            lat3(s),
            format!("{:.2} ms", pct_ms(&s.lat, 100.0)),
            format!("{:.2} ms", pct_ms(&s.lat_sched, 99.0)),
            us(s.cpu_us()),
            format!("{:.2}", s.cores()),
        ]);
    }
    report.say(&format!(
        "Fixed rate: {FIXED_RATE} `/decode` requests per second for {:.0} s, open loop (each request sent at its \
         scheduled time on an idle keep-alive connection, a new one if none is idle); latency from send to whole \
         answer, and from the scheduled time (adds the generator's own lateness: tokio's timer ticks in 1 ms):\n\n",
        plan.fixed.as_secs_f64()
    ));
    report.table(&f);

    // Targets.
    let mut tg = Table::new(&["target (issue #16 section 3)", "measured", "status"]);
    for &n in &SIZES {
        let r = pooled[&(n, py)].cpu_us() / pooled[&(n, sb)].cpu_us();
        tg.row(vec![
            format!("≥ {TARGET_RATIO:.0}× less server CPU per request than Python, {n} payload(s)"),
            format!("{r:.1}×"),
            if r >= TARGET_RATIO {
                "met".into()
            } else {
                "**missed**".into()
            },
        ]);
    }
    if let Some((_, s)) = fixed.iter().find(|(i, _)| *i == sb) {
        let p99 = pct_ms(&s.lat, 99.0);
        tg.row(vec![
            format!("Sealbox p99 < {TARGET_P99_MS:.0} ms at {FIXED_RATE} req/s (1 payload)"),
            format!("{p99:.2} ms (achieved {} req/s)", int(s.rate())),
            if p99 < TARGET_P99_MS && s.errors == 0 {
                "met".into()
            } else {
                "**missed**".into()
            },
        ]);
    }
    report.table(&tg);

    let mut failures = Vec::new();
    let all = pooled
        .iter()
        .map(|(&(n, i), s)| (n, i, s, "closed loop"))
        .chain(
            fixed
                .iter()
                .map(|(i, s)| (FIXED_RATE_PAYLOADS, *i, s, "fixed rate")),
        );
    for (n, i, s, test) in all {
        if s.errors > 0 || s.check_failures > 0 {
            failures.push(format!(
                "{}, {n} payload(s), {test}: {} errors, {} check failures, first: {}",
                KINDS[i].label(),
                s.errors,
                s.check_failures,
                s.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    report.para(&format!(
        "Audit log: {audit_lines} lines written by the audit-to-file instance{}. Servers at the end: {}. Load \
         average at the start of section 3: {load_start}, at its end: {}.{}",
        audit_example.map_or(String::new(), |l| format!(" (last decode line: `{l}`)")),
        server_info.join("; "),
        loadavg(),
        if failures.is_empty() {
            " Every answer was 200 and every checked answer decoded to the original payloads.".to_owned()
        } else {
            format!(" **Failures:** {}.", failures.join("; "))
        }
    ));
    Ok(csv)
}

fn python_versions(setup: &Setup) -> String {
    let out = Command::new(&setup.python)
        .arg("-c")
        .arg(
            "import sys, aiohttp, cryptography, google.protobuf as pb, temporalio.service as _\n\
             from google.protobuf.internal import api_implementation as a\n\
             from importlib.metadata import version\n\
             print(f\"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, cryptography \
             {cryptography.__version__}, protobuf {pb.__version__} ({a.Type()} backend), temporalio \
             {version('temporalio')}\")",
        )
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => "versions unknown".into(),
    }
}

/// `sealbox-perf codec-load --port P [--pid PID] [--payloads N] [--seconds S] [--requests R]
/// [--concurrency C]`: the closed-loop `/decode` load of section 3 against a server started
/// elsewhere (perf/profile_codec_server.sh profiles `sealbox serve` under it). The body is made
/// through that server's `/encode`. Prints one line of results.
pub fn load_command(args: &[String]) {
    let mut port = None;
    let mut pid = None;
    let mut payloads = 1usize;
    let mut seconds = 10.0f64;
    let mut requests = None;
    let mut concurrency = CONCURRENCY;
    let mut it = args.iter();
    let usage = "usage: sealbox-perf codec-load --port P [--pid PID] [--payloads N] [--seconds S] \
                 [--requests R] [--concurrency C]";
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| panic!("{a} needs a value\n{usage}"))
                .clone()
        };
        match a.as_str() {
            "--port" => port = Some(val().parse::<u16>().expect("--port")),
            "--pid" => pid = Some(val().parse::<u32>().expect("--pid")),
            "--payloads" => payloads = val().parse().expect("--payloads"),
            "--seconds" => seconds = val().parse().expect("--seconds"),
            "--requests" => requests = Some(val().parse::<u64>().expect("--requests")),
            "--concurrency" => concurrency = val().parse().expect("--concurrency"),
            other => {
                eprintln!("unknown argument {other}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    let Some(port) = port else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let plain = plaintexts(payloads);
    let result = block_on(&rt, async {
        let (body, _) = encoded_body(port, "the server", &plain).await?;
        let stop = Stop {
            duration: Duration::from_secs_f64(seconds),
            max_requests: requests,
        };
        closed_loop(Target { port, pid }, &body, &plain, stop, concurrency).await
    });
    match result {
        Ok(s) => {
            println!(
                "requests {} errors {} check_failures {} wall {:.2} s, {} req/s, p50/p99/p99.9 {}{}",
                s.requests,
                s.errors,
                s.check_failures,
                s.wall.as_secs_f64(),
                int(s.rate()),
                lat3(&s),
                if pid.is_some() {
                    format!(
                        ", server CPU {} per request ({:.0}% kernel)",
                        us(s.cpu_us()),
                        100.0 * s.sys_share()
                    )
                } else {
                    String::new()
                }
            );
            if s.errors > 0 || s.check_failures > 0 {
                eprintln!("first error: {}", s.first_error.unwrap_or_default());
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("codec-load: {e}");
            std::process::exit(1);
        }
    }
}
