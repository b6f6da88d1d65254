//! KMS faults under load, against a real OpenBao (file storage, so it can be killed and
//! restarted with its keys) behind a fault-injecting proxy. While 8 clients run encodes
//! (each for a new namespace: a new data key), decodes of an already cached key and decodes
//! of uncached keys through the codec server, each scenario breaks the KMS for a while and
//! then mends it. Shown for every scenario:
//! - decodes of cached keys keep succeeding;
//! - everything else fails closed: a typed JSON error (429/5xx), never plaintext;
//! - every request completes (bounded by kms_timeout / request_timeout: nothing hangs);
//! - service recovers without a restart once the KMS is back.
//!
//! It prints one line of figures per scenario (requests, failures by status, max latency,
//! memory) for docs/security.md.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealbox_testkit::faults::{Fault, FaultProxy};
use sealbox_testkit::servers::OpenBao;

use super::*;

const SECRET: &str = "fault secret 0xC0FFEE";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    CachedDecode,
    ColdDecode,
    Encode,
}

struct Record {
    started: Instant,
    kind: Kind,
    status: u16,
    latency: Duration,
}

/// Resident and peak memory of this process (the codec server runs in it), in MiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") / 1024, kib("VmHWM:") / 1024)
}

/// Checks one answer: success is sealed (encode) or the plaintext (decode); failure is a
/// typed JSON error that holds no plaintext.
fn check(kind: Kind, status: u16, body: &str) -> Result<(), String> {
    let secret_b64 = B64.encode(format!("\"{SECRET}\""));
    if status == 200 {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("200 not JSON: {e}"))?;
        let p = &v["payloads"][0];
        let data = p["data"].as_str().unwrap_or_default();
        match kind {
            Kind::Encode if data.contains(&secret_b64) || body.contains(SECRET) => {
                Err(format!("encode answered plaintext: {body}"))
            }
            Kind::Encode if p["metadata"]["encoding"] == B64.encode("json/plain") => {
                Err(format!("encode answered an unsealed payload: {body}"))
            }
            _ => Ok(()),
        }
    } else if !matches!(status, 429 | 500 | 502 | 503 | 504) {
        Err(format!("unexpected status {status}: {body}"))
    } else if body.contains(SECRET) || body.contains(&secret_b64) {
        Err(format!("an error answer holds the plaintext: {body}"))
    } else if serde_json::from_str::<Value>(body).map_or(true, |v| !v["error"].is_string()) {
        Err(format!("an error answer is not a typed JSON error: {body}"))
    } else {
        Ok(())
    }
}

struct Load {
    records: Arc<Mutex<Vec<Record>>>,
    wrong: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts 8 clients looping over: a cached decode, an uncached decode (from `cold`), an
/// encode for a namespace never used before.
fn start_load(app: &Router, cached: Value, cold: Vec<Value>, scenario: &str) -> Load {
    let records = Arc::new(Mutex::new(Vec::new()));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let cold = Arc::new(Mutex::new(cold));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (app, cached, cold) = (app.clone(), cached.clone(), cold.clone());
        let (records, wrong, stop) = (records.clone(), wrong.clone(), stop.clone());
        let scenario = scenario.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let kind = [Kind::CachedDecode, Kind::ColdDecode, Kind::Encode][i % 3];
                let (path, namespace, body) = match kind {
                    Kind::CachedDecode => ("/decode", "load".to_owned(), cached.to_string()),
                    Kind::ColdDecode => {
                        let next = cold.lock().expect("cold").pop();
                        let Some(p) = next else { continue };
                        (
                            "/decode",
                            "load".to_owned(),
                            json!({"payloads": [p]}).to_string(),
                        )
                    }
                    Kind::Encode => (
                        "/encode",
                        format!("{scenario}-{worker}-{i}"),
                        json!({"payloads": [plain(&format!("\"{SECRET}\""))]}).to_string(),
                    ),
                };
                let started = Instant::now();
                let r = post(&app, path, &[("x-namespace", namespace.as_str())], &body).await;
                let latency = started.elapsed();
                if let Err(e) = check(kind, r.status.as_u16(), &r.body) {
                    wrong.lock().expect("wrong").push(format!("{kind:?}: {e}"));
                }
                records.lock().expect("records").push(Record {
                    started,
                    kind,
                    status: r.status.as_u16(),
                    latency,
                });
            }
        }));
    }
    Load {
        records,
        wrong,
        stop,
        tasks,
    }
}

/// Tallies of one phase: answers by kind and status, and the slowest answer.
fn tally(
    records: &[Record],
    from: Instant,
    to: Instant,
) -> (BTreeMap<(Kind, u16), usize>, Duration) {
    let mut by = BTreeMap::new();
    let mut max = Duration::ZERO;
    for r in records
        .iter()
        .filter(|r| r.started >= from && r.started < to)
    {
        *by.entry((r.kind, r.status)).or_insert(0) += 1;
        max = max.max(r.latency);
    }
    (by, max)
}

fn count(by: &BTreeMap<(Kind, u16), usize>, kind: Kind, ok: bool) -> usize {
    by.iter()
        .filter(|((k, s), _)| *k == kind && (*s == 200) == ok)
        .map(|(_, n)| n)
        .sum()
}

enum Break {
    Proxy(Fault),
    KillAndRestart,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_faults_under_load_fail_closed_and_recover_without_a_restart() {
    let mut bao = OpenBao::start_persistent(&["k"]);
    let proxy = FaultProxy::start(&bao.addr).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = bao.token_policy(dir.path(), "k").replace(
        bao.addr.trim_start_matches("http://"),
        proxy.endpoint.trim_start_matches("http://"),
    );
    let server = "[server]\nanonymous = [\"encode\", \"decode\"]\nkms_timeout = \"1s\"\nrequest_timeout = \"5s\"\n";
    let text = format!(
        "{policy}[default.lease]\nmax_payloads = 1\n{server}audit_log = \"{}\"\n",
        dir.path().join("audit").display()
    );
    // The writer seals the payloads the reader will find uncached; the reader serves the load.
    let writer = app(state_from(&dir.path().join("writer.toml"), &text).await);
    let reader = app(state_from(&dir.path().join("reader.toml"), &text).await);
    let scenarios: Vec<(&str, Break)> = vec![
        (
            "latency 3 s (kms_timeout 1 s)",
            Break::Proxy(Fault::Delay(Duration::from_secs(3))),
        ),
        (
            "KMS stops answering (black hole)",
            Break::Proxy(Fault::Blackhole),
        ),
        (
            "throttled: every call 429",
            Break::Proxy(Fault::Fail {
                status: 429,
                every: 1,
            }),
        ),
        (
            "every 2nd call 500",
            Break::Proxy(Fault::Fail {
                status: 500,
                every: 2,
            }),
        ),
        ("OpenBao killed, restarted 3 s later", Break::KillAndRestart),
    ];
    let mut figures = Vec::new();
    for (n, (name, fault)) in scenarios.into_iter().enumerate() {
        // Fresh envelopes for this scenario, each under its own data key; one cached.
        let plain_payloads: Vec<Value> = (0..200)
            .map(|i| plain(&format!("\"{SECRET} {i}\"")))
            .collect();
        let sealed = post(
            &writer,
            "/encode",
            &[("x-namespace", "load")],
            &json!({"payloads": plain_payloads}).to_string(),
        )
        .await;
        assert_eq!(
            sealed.status,
            StatusCode::OK,
            "{name}: sealing the pool: {}",
            sealed.body
        );
        let mut pool = sealed.json()["payloads"]
            .as_array()
            .expect("payloads")
            .clone();
        let cached = json!({"payloads": [pool.pop().expect("one")]});
        let warm = post(
            &reader,
            "/decode",
            &[("x-namespace", "load")],
            &cached.to_string(),
        )
        .await;
        assert_eq!(warm.status, StatusCode::OK, "{name}: {}", warm.body);

        let load = start_load(&reader, cached, pool, &format!("s{n}"));
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t1 = Instant::now();
        let calls_before = proxy.requests();
        match &fault {
            Break::Proxy(f) => proxy.set(*f),
            Break::KillAndRestart => tokio::task::block_in_place(|| bao.kill()),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss_fault, _) = memory();
        match &fault {
            Break::Proxy(_) => proxy.set(Fault::Pass),
            Break::KillAndRestart => tokio::task::block_in_place(|| bao.restart()),
        }
        let t2 = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        load.stop.store(true, Ordering::Relaxed);
        let t3 = Instant::now();
        for t in load.tasks {
            // Every request in flight completes: nothing hangs past the server's timeouts.
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap_or_else(|_| panic!("{name}: a request hung"))
                .expect("client");
        }
        let wrong = load.wrong.lock().expect("wrong").clone();
        assert!(
            wrong.is_empty(),
            "{name}: {} bad answers:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        let ((before, max_before), (during, max_during), (after, max_after)) = {
            let records = load.records.lock().expect("records");
            (
                tally(&records, t0, t1),
                tally(&records, t1, t2),
                tally(&records, t2, t3),
            )
        };
        // Cached keys need no KMS: they are served throughout.
        for (phase, by) in [("before", &before), ("during", &during), ("after", &after)] {
            assert!(
                count(by, Kind::CachedDecode, true) > 0,
                "{name} {phase}: {by:?}"
            );
            assert_eq!(
                count(by, Kind::CachedDecode, false),
                0,
                "{name} {phase}: a cached decode failed: {by:?}"
            );
        }
        // The fault was real: requests that needed the KMS failed while it lasted (a server
        // error on every other call is mostly absorbed by the providers' retries).
        let failed_during =
            count(&during, Kind::Encode, false) + count(&during, Kind::ColdDecode, false);
        if !matches!(fault, Break::Proxy(Fault::Fail { every: 2, .. })) {
            assert!(
                failed_during > 0,
                "{name}: nothing failed during the fault: {during:?}"
            );
        }
        // Recovery without a restart of the codec server.
        assert!(
            count(&after, Kind::Encode, true) > 0,
            "{name}: no encode succeeded after: {after:?}"
        );
        let probe = post(
            &reader,
            "/encode",
            &[("x-namespace", &format!("probe-{n}"))],
            &json!({"payloads": [plain("\"p\"")]}).to_string(),
        )
        .await;
        assert_eq!(
            probe.status,
            StatusCode::OK,
            "{name}: not recovered: {}",
            probe.body
        );
        let (rss_after, peak) = memory();
        let statuses = |by: &BTreeMap<(Kind, u16), usize>| {
            let mut s: BTreeMap<u16, usize> = BTreeMap::new();
            for ((_, status), n) in by {
                *s.entry(*status).or_insert(0) += n;
            }
            s.iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        figures.push(format!(
            "{name} | before: {} (max {:?}) | during: {} (max {:?}), cached decodes ok {} | after: {} (max {:?}) | KMS calls during {} | RSS {rss_fault}→{rss_after} MiB, peak {peak} MiB",
            statuses(&before),
            max_before,
            statuses(&during),
            max_during,
            count(&during, Kind::CachedDecode, true),
            statuses(&after),
            max_after,
            proxy.requests() - calls_before,
        ));
    }
    eprintln!(
        "KMS faults under load (8 clients; kms_timeout 1 s):\n{}",
        figures.join("\n")
    );
}
