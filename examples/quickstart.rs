//! Seal and open a payload with the embedded default: the local development KEK, generated
//! on first use into `.sealbox/dev.kek` (owner-only). No cloud account needed.
//!
//! ```sh
//! cargo run --example quickstart -- "any text to seal"
//! ```
#![allow(clippy::print_stdout, missing_docs)]

use std::sync::Arc;

use sealbox::{EncryptionContext, Keyring, LocalKek, inspect};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let message = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "hello, sealbox".to_owned());

    // The local KEK logs a loud warning: it is for development only.
    let kek = Arc::new(LocalKek::dev_default()?);
    let keyring = Keyring::builder(kek).build()?;

    // The context is bound to the envelope: for Temporal it holds the namespace.
    let context = EncryptionContext::new().with("namespace", "quickstart")?;
    let envelope = keyring.seal(&context, message.as_bytes()).await?;

    // Anyone can read the header, without keys.
    let header = inspect(&envelope)?;
    println!(
        "sealed {} bytes into a {}-byte envelope",
        message.len(),
        envelope.len()
    );
    println!("  format  v{} suite {}", header.version, header.suite);
    println!("  KEK     {}", header.kek());
    println!("  context {}", header.context);

    let opened = keyring.open(&context, &envelope).await?;
    println!("opened: {}", String::from_utf8(opened)?);

    // The wrong namespace cannot open it.
    let other = EncryptionContext::new().with("namespace", "someone-else")?;
    match keyring.open(&other, &envelope).await {
        Ok(_) => return Err("an envelope opened under another namespace".into()),
        Err(e) => println!("refused under another namespace: {e}"),
    }
    let stats = keyring.stats();
    println!("KMS calls: {} (1 seal, 2 opens)", stats.kms_calls());
    Ok(())
}
