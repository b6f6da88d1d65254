//! A real PostgreSQL server (Debian's, found with `pg_config --bindir`) in a temporary
//! directory, on a free loopback port, stopped when its guard drops (also on panic).
//!
//! `initdb` and `postgres` refuse to run as root: when the tests run as root, the directory
//! is handed to the `postgres` user and both run as that user through `setpriv` (which
//! `exec`s, so the spawned process is the server itself). The cluster trusts every local
//! connection (`initdb -A trust`), with the superuser [`Postgres::USER`], UTF-8 and the C
//! locale, and runs without fsync. A missing PostgreSQL fails the test with the command that
//! installs it; nothing is skipped.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{Guard, find_on_path, free_port, retry_on_taken_port};

const INSTALL: &str = "PostgreSQL is not installed: run `apt-get install postgresql` (Debian; \
     `scripts/setup-tools.sh` does it), which provides `pg_config`, `initdb` and `postgres`";

/// A PostgreSQL server on `127.0.0.1:PORT`, with a fresh cluster.
pub struct Postgres {
    guard: Guard,
    bindir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The user `initdb`/`postgres` run as when the tests run as root.
const OS_USER: &str = "postgres";

impl Postgres {
    /// The cluster's superuser (no password: the cluster trusts local connections).
    pub const USER: &'static str = "sealbox";

    /// Creates a cluster with `initdb`, starts `postgres` on a free loopback port and waits
    /// until it accepts connections.
    pub fn start() -> Self {
        let bindir = bindir();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let as_user = running_as_root(dir.path()).then(|| {
            let (uid, gid) = os_user_ids(OS_USER);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to {OS_USER}: {e}", dir.path().display()));
            OS_USER
        });
        let data = dir.path().join("data");
        let out = command(&bindir.join("initdb"), as_user, dir.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                Self::USER,
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (guard, port) = retry_on_taken_port("PostgreSQL", || {
            Self::try_start_server(&bindir, as_user, dir.path(), &data)
        });
        let server = Self {
            guard,
            bindir,
            port,
            dir,
        };
        server.wait_ready();
        server
    }

    fn try_start_server(
        bindir: &Path,
        as_user: Option<&str>,
        dir: &Path,
        data: &Path,
    ) -> Result<(Guard, u16), String> {
        let port = free_port();
        let log = dir.join(format!("postgres-{port}.log"));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        let err = out.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));
        let child = command(&bindir.join("postgres"), as_user, dir)
            .arg("-D")
            .arg(data)
            .arg("-k")
            .arg(dir)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F"])
            .args(["-c", "max_connections=30", "-c", "shared_buffers=16MB"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        let mut guard = Guard {
            child,
            log,
            name: "PostgreSQL",
        };
        guard.try_wait_for_port(port, Duration::from_secs(60))?;
        Ok((guard, port))
    }

    /// Waits until the server accepts connections (it listens before recovery is done).
    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let status = Command::new(self.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", Self::USER, "-d", "postgres"])
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run pg_isready: {e}"));
            if status.success() {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "PostgreSQL did not accept connections within 60 s:\n{}",
                    self.guard.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `postgres://sealbox@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{db}", Self::USER, self.port)
    }

    /// Runs SQL with `psql` in database `db`; stdout, or an error with stderr.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", Self::USER, "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        crate::servers::output_text(&format!("psql -c {sql:?}"), &out)
    }

    /// Like [`Postgres::try_psql`], panicking on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The directory holding the cluster (`data/`), the Unix socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    /// Fast shutdown (SIGINT), so the server removes its shared memory; the guard kills it
    /// if it has not exited within 10 s.
    fn drop(&mut self) {
        let pid = self.guard.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let start = Instant::now();
            while matches!(self.guard.child.try_wait(), Ok(None))
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// PostgreSQL's program directory (`pg_config --bindir`).
fn bindir() -> PathBuf {
    let pg_config = find_on_path("pg_config").unwrap_or_else(|| panic!("{INSTALL}"));
    let out = Command::new(&pg_config)
        .arg("--bindir")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pg_config.display()));
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && dir.join("initdb").is_file() && dir.join("postgres").is_file(),
        "`pg_config --bindir` gave {} without initdb and postgres. {INSTALL}",
        dir.display()
    );
    dir
}

/// Whether this process runs as root (it owns the directory it just created as uid 0).
fn running_as_root(created: &Path) -> bool {
    std::fs::metadata(created).is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn os_user_ids(user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .unwrap_or_else(|| {
            panic!(
                "the tests run as root, and initdb/postgres refuse to: they run as the `{user}` \
                 user, which does not exist. {INSTALL} (the package creates it)"
            )
        })
}

/// `program` run in `cwd`, as `user` through `setpriv` when given.
fn command(program: &Path, user: Option<&str>, cwd: &Path) -> Command {
    let mut cmd = match user {
        Some(user) => {
            let setpriv = find_on_path("setpriv").unwrap_or_else(|| {
                panic!(
                    "`setpriv` (Debian package util-linux) is needed to run PostgreSQL as {user}"
                )
            });
            let mut cmd = Command::new(setpriv);
            cmd.arg(format!("--reuid={user}"))
                .arg(format!("--regid={user}"))
                .args(["--init-groups", "--"])
                .arg(program);
            cmd
        }
        None => Command::new(program),
    };
    // postgres refuses a working directory it cannot read.
    cmd.current_dir(cwd).env("LC_ALL", "C");
    cmd
}
