//! The Temporal Web UI (from `temporal server start-dev --ui-codec-endpoint`) in headless
//! Chromium: a workflow whose input reached Temporal encrypted shows decoded on the page,
//! fetched by the browser from our codec server across origins (CORS preflight included).
//! The screenshot is kept in `target/test-artifacts/webui-decoded.png`.

use std::path::Path;

use sealbox_testkit::servers::{TemporalDev, free_port, workspace_root};

use crate::{serve_on_loopback, state_from};

fn tool(path: &str, install: &str) -> String {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/setup-tools.sh ({install})"
    );
    path.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_shows_the_decoded_input() {
    let chromium = tool("/usr/bin/chromium", "apt-get install chromium");
    let playwright = workspace_root().join("scripts/node");
    tool(
        &playwright
            .join("node_modules/playwright-core")
            .to_string_lossy(),
        "npm ci --prefix scripts/node",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("kek");
    sealbox_testkit::write_secret_file(&key, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
    let ui_port = free_port();
    let ui = format!("http://127.0.0.1:{ui_port}");
    let text = format!(
        "version = 1\n[default]\nactive = \"local:///ui?file={}\"\n[server]\nanonymous = [\"encode\", \"decode\"]\ncors_origins = [\"{ui}\"]\naudit_log = \"{}\"\n",
        key.display(),
        dir.path().join("audit.jsonl").display()
    );
    let state = state_from(&dir.path().join("policy.toml"), &text).await;
    let endpoint = serve_on_loopback(state).await;

    let temporal = TemporalDev::start_with_ui(&[], &endpoint, ui_port);
    let secret = "Ada Lovelace card 5500-0000-0000-0004";
    let wid = "webui-decoded";
    // Started through the CLI with the codec: the input reaches Temporal encrypted.
    temporal.cli(&[
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
        &format!("\"{secret}\""),
        "--codec-endpoint",
        &endpoint,
    ]);
    let raw = temporal.cli(&[
        "workflow",
        "show",
        "--namespace",
        "default",
        "--workflow-id",
        wid,
        "--output",
        "json",
    ]);
    assert!(
        !raw.contains("Ada Lovelace") && raw.contains("YmluYXJ5L2VuY3J5cHRlZA=="),
        "stored encrypted"
    );

    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("webui-decoded.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::process::Command::new("node")
        .arg(workspace_root().join("crates/sealbox-server/tests/webui.mjs"))
        .args([&ui, "default", wid, secret, &shot.to_string_lossy()])
        .env("PLAYWRIGHT_DIR", &playwright)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("run node (install Node.js)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the decoded input did not appear in the Web UI: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.is_file(), "screenshot saved");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"operation\":\"decode\"") && l.contains("\"status\":200")),
        "the browser called /decode: {audit}"
    );
}
