//! Child processes of the test servers: a guard that kills its child when dropped, waiting
//! for the child to listen on its port (and own it), and `/proc` lookups of who holds a port
//! and whether a process is stopped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub(crate) struct Guard {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    pub(crate) name: &'static str,
}

impl Guard {
    /// Starts `cmd` as the server `name` with stdin closed and stdout and stderr written to
    /// the file `log`; panics if the log file cannot be created or the command not started.
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        let err = out.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                let program = Path::new(cmd.get_program());
                panic!("cannot start {}: {e}", program.display())
            });
        Self { child, log, name }
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub(crate) fn wait_for_port(&mut self, port: u16, deadline: Duration) {
        if let Err(owner) = self.try_wait_for_port(port, deadline) {
            panic!(
                "{}: port {port} is held by another process ({owner}), not by the server this \
                 test started:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// Waits until the child (or a process it started) listens on `port`. `Err` names the
    /// process that holds the port instead: two servers started side by side were handed
    /// the same free port, and connecting would reach the other test's server.
    pub(crate) fn try_wait_for_port(
        &mut self,
        port: u16,
        deadline: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                match listener_owner(port) {
                    Some(pid) if descends_from(pid, self.child.id()) => return Ok(()),
                    Some(pid) => return Err(format!("pid {pid}")),
                    // Not visible in /proc (not Linux): trust the child if it is still up.
                    None if matches!(self.child.try_wait(), Ok(None)) => return Ok(()),
                    None => {}
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before listening on port {port}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if start.elapsed() > deadline {
                panic!(
                    "{} did not listen on port {port} within {deadline:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Guard {
    /// Sends `sig` (`-STOP` or `-CONT`) to the server and waits until `/proc` shows it
    /// stopped (or running again). A stopped server must still own its listening `port`
    /// and, when `probe` (plain HTTP), answer nothing there — so a test that then sees an
    /// answer knows it did not come from a server that was still running.
    pub(crate) fn signal(&self, sig: &str, port: u16, probe: bool) {
        let pid = self.child.id();
        let status = Command::new("kill").args([sig, &pid.to_string()]).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "kill {sig} {pid} failed"
        );
        // `kill` returns when the signal is queued (and succeeds on a zombie): wait until the
        // process is really stopped (or running again).
        let want_stopped = sig == "-STOP";
        let start = Instant::now();
        loop {
            match proc_stat(pid) {
                Some((state, _)) if matches!(state, 'T' | 't') == want_stopped => break,
                Some(_) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => panic!(
                    "{} (pid {pid}) is not {} after kill {sig}: /proc state {other:?}",
                    self.name,
                    if want_stopped { "stopped" } else { "running" }
                ),
            }
        }
        if want_stopped {
            if let Some(owner) = listener_owner(port) {
                assert!(
                    descends_from(owner, pid),
                    "{}'s port is held by pid {owner}, not by the frozen server {pid}",
                    self.name
                );
            }
            if probe {
                assert_silent(port);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server with `start` (which picks a free port), again on another port when the
/// one it was handed is taken by another process meanwhile (up to 5 tries).
pub(crate) fn retry_on_taken_port<T>(name: &str, start: impl Fn() -> Result<T, String>) -> T {
    let mut taken = Vec::new();
    for _ in 0..5 {
        match start() {
            Ok(server) => return server,
            Err(e) => taken.push(e),
        }
    }
    panic!("{name}: every free port tried was taken by another process: {taken:?}");
}

/// Asserts that an HTTP request to 127.0.0.1:`port` gets no answer within 300 ms.
fn assert_silent(port: u16) {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return; // refusing connections is silent too
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = s.write_all(b"GET /v1/sys/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    let mut buf = [0u8; 64];
    if let Ok(n) = s.read(&mut buf)
        && n > 0
    {
        panic!(
            "a frozen server answered on port {port}: {}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

/// The process that owns the listening TCP socket on 127.0.0.1:`port` (Linux `/proc`).
fn listener_owner(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            let listening = f.get(3) == Some(&"0A");
            let on_port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening
                && on_port
                && let Some(inode) = f.get(9)
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match proc_stat(pid).and_then(|(_, ppid)| (ppid > 1).then_some(ppid)) {
            Some(parent) => pid = parent,
            None => return false,
        }
    }
    false
}

/// The state letter and parent pid of `pid` from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}
