//! End to end with real Temporal clients: a Temporal Python SDK worker whose payload codec
//! calls our `/encode` and `/decode`; the `temporal` CLI reading the history without the codec
//! (no plaintext) and with `--codec-endpoint` (plain and `{namespace}` forms) and
//! `--codec-auth` (plaintext).

use sealbox_testkit::servers::{TemporalDev, find_tool, json_stdout, workspace_root};

use crate::{serve_on_loopback, state_from};

const TOKEN: &str = "e2e-token-0123456789abcdef";

async fn codec_server(dir: &std::path::Path) -> String {
    let key = dir.join("kek");
    sealbox_testkit::write_secret_file(&key, "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=");
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let text = format!(
        "version = 1\n[default]\nactive = \"local:///e2e?file={}\"\n[server]\naudit_log = \"{}\"\n[[server.token]]\nname = \"e2e\"\ntoken_file = \"{}\"\nnamespaces = [\"*\"]\npermissions = [\"encode\", \"decode\"]\n",
        key.display(),
        dir.join("audit.jsonl").display(),
        token.display()
    );
    serve_on_loopback(state_from(&dir.join("policy.toml"), &text).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_and_temporal_cli_through_the_codec_server() {
    let temporal = TemporalDev::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = codec_server(dir.path()).await;
    let secret = "Grace Hopper, SSN 078-05-1120";
    let workflow_id = "python-remote-codec";

    let python = find_tool(
        "python",
        "python3 -m venv .tools/venv (scripts/setup-tools.sh)",
    );
    let script = workspace_root().join("crates/sealbox-server/tests/python_remote_codec.py");
    let auth = format!("Bearer {TOKEN}");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            &temporal.address,
            &endpoint,
            "default",
            &auth,
            secret,
            workflow_id,
        ])
        .output()
        .await
        .expect("run the Python worker");
    let result = json_stdout("Python SDK worker failed", &out);
    assert_eq!(result["result"], format!("Hello, {secret}!"));

    let show = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "workflow",
            "show",
            "--namespace",
            "default",
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        temporal.try_cli(&refs)
    };
    // The CLI prints payload data as base64 of the JSON value.
    use base64::Engine;
    let visible = base64::engine::general_purpose::STANDARD.encode(format!("\"{secret}\""));
    let raw = show(vec![]).expect("show without codec");
    assert!(
        !raw.contains("Grace Hopper") && !raw.contains(&visible),
        "plaintext in the raw history"
    );
    assert!(
        raw.contains("YmluYXJ5L2VuY3J5cHRlZA=="),
        "payloads are binary/encrypted"
    );

    // Through the codec server at `codec_endpoint`, with the token.
    let show_decoded = |codec_endpoint: String| {
        show(vec![
            "--codec-endpoint".into(),
            codec_endpoint,
            "--codec-auth".into(),
            auth.clone(),
        ])
    };
    let decoded = show_decoded(endpoint.clone()).expect("show with codec");
    assert!(
        decoded.contains(&visible),
        "the CLI shows plaintext through the codec:\n{decoded}"
    );
    assert!(
        decoded.contains("anNvbi9wbGFpbg=="),
        "decoded payloads are json/plain again"
    );
    let templated =
        show_decoded(format!("{endpoint}/{{namespace}}")).expect("show with {namespace} endpoint");
    assert!(templated.contains(&visible));
    // Without credentials the codec server refuses: no plaintext.
    match show(vec!["--codec-endpoint".into(), endpoint.clone()]) {
        Ok(text) => assert!(!text.contains(&visible)),
        // The CLI retries the refused call until its deadline, then fails without output.
        Err(e) => assert!(!e.contains(&visible), "{e}"),
    }
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("audit");
    assert!(audit.contains("\"subject\":\"token:e2e\""));
    assert!(audit.contains("\"status\":401"));
    assert!(!audit.contains("Grace"));
}
