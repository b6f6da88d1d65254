//! The Temporal Web UI (from `temporal server start-dev --ui-codec-endpoint`) in headless
//! Chromium: a workflow whose input reached Temporal encrypted shows decoded on the page,
//! fetched by the browser from our codec server across origins (CORS preflight included);
//! an input kept in external storage shows as a reference whose download button returns the
//! original. Screenshots are kept in `target/test-artifacts/`.

use std::path::Path;

use base64::Engine;
use sealbox_testkit::servers::{TemporalDev, free_port, workspace_root};

use crate::{serve_on_loopback, state_from};

fn tool(path: &str, install: &str) -> String {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/setup-tools.sh ({install})"
    );
    path.to_owned()
}

/// A codec server (policy `[default]` plus `extra`, anonymous, CORS for the UI) and a dev
/// server whose Web UI calls it.
struct Ui {
    dir: tempfile::TempDir,
    endpoint: String,
    temporal: TemporalDev,
    url: String,
}

async fn start_ui(extra: &str) -> Ui {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
    let ui_port = free_port();
    let url = format!("http://127.0.0.1:{ui_port}");
    let text = format!(
        "version = 1\n{extra}[default]\nactive = \"local:///ui?file={}\"\n{}[server]\nanonymous = [\"encode\", \"decode\"]\ncors_origins = [\"{url}\"]\naudit_log = \"{}\"\n",
        key.display(),
        if extra.is_empty() {
            ""
        } else {
            "external_storage = \"always\"\n"
        },
        dir.path().join("audit.jsonl").display()
    );
    let state = state_from(&dir.path().join("policy.toml"), &text).await;
    let endpoint = serve_on_loopback(state).await;
    let temporal = TemporalDev::start_with_ui(&[], &endpoint, ui_port);
    Ui {
        dir,
        endpoint,
        temporal,
        url,
    }
}

impl Ui {
    /// Starts workflow `wid` with `input` (JSON) through the CLI and the codec server; returns
    /// the raw history.
    fn start_workflow(&self, wid: &str, input: &str) -> String {
        self.temporal.cli(&[
            "workflow",
            "start",
            "--namespace",
            "default",
            "--type",
            "ChargeWorkflow",
            "--task-queue",
            "nobody-polls",
            "--workflow-id",
            wid,
            "--input",
            input,
            "--codec-endpoint",
            &self.endpoint,
        ]);
        self.temporal.cli(&[
            "workflow",
            "show",
            "--namespace",
            "default",
            "--workflow-id",
            wid,
            "--output",
            "json",
        ])
    }

    /// Opens workflow `wid` in Chromium (`tests/webui.mjs`) until `expected` shows; with
    /// `download`, clicks the reference's download button and checks the file holds it.
    async fn browse(&self, wid: &str, expected: &str, download: Option<&str>) -> String {
        let chromium = tool("/usr/bin/chromium", "apt-get install chromium");
        let playwright = workspace_root().join("scripts/node");
        tool(
            &playwright
                .join("node_modules/playwright-core")
                .to_string_lossy(),
            "npm ci --prefix scripts/node",
        );
        let artifacts = workspace_root().join("target/test-artifacts");
        std::fs::create_dir_all(&artifacts).expect("artifacts dir");
        let shot = artifacts.join(format!("{wid}.png"));
        let _ = std::fs::remove_file(&shot);
        let out = tokio::process::Command::new("node")
            .arg(workspace_root().join("crates/sealbox-server/tests/webui.mjs"))
            .args([&self.url, "default", wid, expected, &shot.to_string_lossy()])
            .args(download)
            .env("PLAYWRIGHT_DIR", &playwright)
            .env("CHROMIUM", &chromium)
            .output()
            .await
            .expect("run node (install Node.js)");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{wid}: the Web UI did not show what it should: {report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(shot.is_file(), "screenshot saved");
        report
    }

    /// The audit log has a successful request for `operation` (the browser called it).
    fn assert_audited(&self, operation: &str) {
        let audit = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).expect("audit");
        let line = format!("\"operation\":\"{operation}\"");
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&line) && l.contains("\"status\":200")),
            "the browser called /{operation}: {audit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_shows_the_decoded_input() {
    let ui = start_ui("").await;
    let secret = "Ada Lovelace card 5500-0000-0000-0004";
    let wid = "webui-decoded";
    // Started through the CLI with the codec: the input reaches Temporal encrypted.
    let raw = ui.start_workflow(wid, &format!("\"{secret}\""));
    assert!(
        !raw.contains("Ada Lovelace") && raw.contains("YmluYXJ5L2VuY3J5cHRlZA=="),
        "stored encrypted"
    );
    ui.browse(wid, secret, None).await;
    ui.assert_audited("decode");
}

/// With `external_storage = "always"`, the input is sealed into the store and history holds
/// a reference: the UI (which asks `/decode?preserveStorageRefs=true`) shows the reference
/// with a download button, and the button's `/download` returns the decrypted original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_downloads_an_externally_stored_input() {
    let objects = tempfile::tempdir().expect("objects");
    let ui = start_ui(&format!(
        "[storage]\nurl = \"file://{}\"\n",
        objects.path().display()
    ))
    .await;
    let secret = "Grace Hopper card 4000-0000-0000-0002";
    let wid = "webui-external-storage";
    let raw = ui.start_workflow(wid, &format!("\"{secret}\""));
    assert!(!raw.contains("Grace Hopper"), "no plaintext in history");
    assert!(
        raw.contains(&crate::B64.encode("temporal.api.sdk.v1.ExternalStorageReference")),
        "history holds a reference: {raw}"
    );
    let report = ui
        .browse(
            wid,
            "Payload downloads require a codec server",
            Some(secret),
        )
        .await;
    assert!(report.contains("\"holdsExpected\":true"), "{report}");
    ui.assert_audited("download");
}
