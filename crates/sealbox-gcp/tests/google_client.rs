//! Holds the Cloud KMS emulator to Google's own client: `google_client.py` drives it with
//! `google-cloud-kms` (REST transport) — key ring, key, encrypt with AAD and CRC32C, decrypt,
//! rotation, the old ciphertext after rotation, a disabled version, a bad token.

use std::process::Command;

use sealbox_testkit::gcpkms::GcpKmsEmulator;
use sealbox_testkit::servers::workspace_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_python_client_agrees_with_the_emulator() {
    let python = workspace_root().join(".tools/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup-tools.sh (it installs google-cloud-kms and google-crc32c)",
        python.display()
    );
    let emu = GcpKmsEmulator::start().await;
    let host = emu.endpoint.trim_start_matches("http://").to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/google_client.py");
    let token = emu.preshared_token.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(host)
            .arg(token)
            .output()
    })
    .await
    .expect("join")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Google's client disagrees with the emulator:\n{stdout}\n{stderr}\nrequests: {:?}",
        emu.requests()
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("passed, 0 failed") && !last.starts_with("0 "),
        "{stdout}"
    );
}
