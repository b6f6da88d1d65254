//! `sealbox`: check key policies, seal, open and inspect envelopes, and test KEKs.
//!
//! Exit codes: 0 success; 1 the operation failed (an envelope did not open, a KMS refused, a
//! KEK failed its test); 2 invalid usage or an invalid policy file.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use sealbox_core::{EncryptionContext, EnvelopeHeader, inspect};
use sealbox_policy::{
    KekUri, Policy, PolicyConfig, PolicyKeyrings, connect, describe_kek, display_kek,
};
use serde_json::{Value, json};

/// Prints a line to stdout; a closed pipe (`sealbox … | head`) ends output quietly instead of
/// panicking like `println!` would.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

mod rotate;
mod storage;
mod workflow;

/// Sealbox: KMS-backed envelope encryption for Temporal and beyond.
#[derive(Parser)]
#[command(name = "sealbox", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with key-policy files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Seal stdin (or --in) for a namespace; write the envelope to stdout (or --out).
    Seal(IoArgs),
    /// Open an envelope for a namespace. On any failure nothing is written and the exit code is 1.
    Open(IoArgs),
    /// Print an envelope's header (format, suite, KEK and version, context) without any key.
    Inspect {
        /// Read the envelope from this file instead of stdin.
        #[arg(long = "in", value_name = "PATH")]
        input: Option<PathBuf>,
        /// Print the KEK as this policy file names it (no KMS is contacted).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work with the KEKs a policy names.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Rotate keys over a store of envelopes: inventory, rewrap, reencrypt, check.
    Rotate {
        #[command(subcommand)]
        command: rotate::RotateCommand,
    },
    /// Run a worker: `sealbox worker rotate` runs rotation workflows (`rotate … --temporal`).
    Worker {
        #[command(subcommand)]
        command: WorkerCommand,
    },
    /// External storage: collect objects no workflow history references.
    Storage {
        #[command(subcommand)]
        command: storage::StorageCommand,
    },
    /// Run the codec server (Temporal Web UI, CLI and remote codecs) with a policy file's
    /// KEKs and its [server] settings. SIGHUP reloads the policy; SIGTERM/Ctrl-C stop gracefully.
    Serve {
        /// The key-policy file (with an optional [server] section).
        #[arg(long, value_name = "PATH", default_value = "keyring-config/dev.toml")]
        config: PathBuf,
        /// Listen on this address instead of [server].listen (default 127.0.0.1:8089).
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum WorkerCommand {
    /// Run rotation workflows and their shard activities (started by `sealbox rotate
    /// rewrap|reencrypt … --temporal`) until SIGTERM or Ctrl-C; run several for more speed.
    Rotate {
        /// The key-policy file (the KEKs to rotate with; also the codec of the workflow's
        /// own payloads).
        #[arg(long, env = "SEALBOX_CONFIG", value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        temporal: workflow::TemporalArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a policy file and print the effective policy per namespace rule.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Also show which policy applies to these namespaces (repeatable).
        #[arg(long = "namespace", value_name = "NS")]
        namespaces: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make one wrap/unwrap round trip with every KEK the policy names; report latency and errors.
    Test {
        /// The policy file.
        #[arg(long, env = "SEALBOX_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct IoArgs {
    /// The policy file.
    #[arg(long, env = "SEALBOX_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// The Temporal namespace (selects the policy and is bound to the envelope).
    #[arg(long, value_name = "NS")]
    namespace: String,
    /// Read from this file instead of stdin.
    #[arg(long = "in", value_name = "PATH")]
    input: Option<PathBuf>,
    /// Write to this file instead of stdout (replaced atomically, only on success).
    #[arg(long = "out", value_name = "PATH")]
    output: Option<PathBuf>,
}

/// A failure with its exit code and a message telling the user what to do.
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALBOX_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                let _ = writeln!(std::io::stderr().lock(), "sealbox: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Config {
            command:
                ConfigCommand::Check {
                    file,
                    namespaces,
                    json,
                },
        } => check(&file, &namespaces, json),
        Command::Seal(args) => seal_or_open(args, true).await,
        Command::Open(args) => seal_or_open(args, false).await,
        Command::Inspect {
            input,
            config,
            json,
        } => {
            let policy = config.as_deref().map(load_config).transpose()?;
            let bytes = read_input(input.as_deref())?;
            let header =
                inspect(&bytes).map_err(|e| fail(1, format!("not a readable envelope: {e}")))?;
            print_header(&header, policy.as_ref(), json);
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Test { config, json },
        } => keys_test(&config, json).await,
        Command::Rotate { command } => rotate::rotate(command).await,
        Command::Storage { command } => storage::storage(command).await,
        Command::Worker {
            command: WorkerCommand::Rotate { config, temporal },
        } => workflow::worker(&config, &temporal).await,
        Command::Serve { config, listen } => sealbox_server::run(config, listen)
            .await
            .map_err(|e| fail(2, format!("codec server: {e}"))),
    }
}

fn load_config(path: &Path) -> Result<PolicyConfig, Failure> {
    PolicyConfig::from_file(path).map_err(|e| fail(2, format!("invalid policy file:\n{e}")))
}

fn read_input(path: Option<&Path>) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    match path {
        Some(p) => {
            buf = std::fs::read(p)
                .map_err(|e| fail(1, format!("cannot read {}: {e}", p.display())))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| fail(1, format!("cannot read stdin: {e}")))?;
        }
    }
    Ok(buf)
}

/// Writes only complete output: a file is written beside its target and renamed into place.
fn write_output(path: Option<&Path>, bytes: &[u8]) -> Result<(), Failure> {
    match path {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .map_err(|e| fail(1, format!("cannot write stdout: {e}")))
        }
        Some(p) => {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| fail(1, format!("cannot create a file in {}: {e}", dir.display())))?;
            tmp.write_all(bytes)
                .and_then(|()| tmp.as_file().sync_all())
                .map_err(|e| fail(1, format!("cannot write {}: {e}", p.display())))?;
            tmp.persist(p)
                .map_err(|e| fail(1, format!("cannot write {}: {}", p.display(), e.error)))?;
            Ok(())
        }
    }
}

async fn seal_or_open(args: IoArgs, seal: bool) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let input = read_input(args.input.as_deref())?;
    let policy = PolicyKeyrings::build(config)
        .await
        .map_err(|e| fail(1, e.to_string()))?;
    let result = if seal {
        policy.seal(&args.namespace, &input).await
    } else {
        policy.open(&args.namespace, &input).await
    };
    let output = result.map_err(|e| {
        let what = if seal { "seal" } else { "open" };
        fail(
            1,
            format!("could not {what} for namespace `{}`: {e}", args.namespace),
        )
    })?;
    write_output(args.output.as_deref(), &output)
}

/// The policy's URI for the header's KEK when a policy names it, else the header's own
/// (host-less) form.
fn kek_uri_of(header: &EnvelopeHeader, policy: Option<&PolicyConfig>) -> String {
    policy
        .and_then(|p| p.uri_for(header.kek()))
        .map_or_else(|| display_kek(header.kek()), |uri| uri.to_string())
}

fn print_header(h: &EnvelopeHeader, policy: Option<&PolicyConfig>, json: bool) {
    let uri = kek_uri_of(h, policy);
    let context: serde_json::Map<String, Value> = h
        .context
        .iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    if json {
        let v = json!({
            "format_version": h.version,
            "suite": { "id": h.suite.id(), "name": h.suite.name() },
            "kek": {
                "provider": h.kek().provider(),
                "key_id": h.kek().key_id(),
                "key_version": h.kek().key_version(),
                "uri": uri,
            },
            "context": context,
            "wrapped_key_len": h.wrapped_key.ciphertext().len(),
            "header_len": h.encoded_len(),
            "plaintext_len": h.plaintext_len(),
        });
        out!("{v:#}");
    } else {
        out!("format       v{}", h.version);
        out!("suite        {}", h.suite);
        out!(
            "kek          {} key `{}`",
            h.kek().provider(),
            h.kek().key_id()
        );
        out!(
            "key version  {}",
            h.kek()
                .key_version()
                .unwrap_or("(none reported by the KMS)")
        );
        out!("kek uri      {uri}");
        out!(
            "context      {}",
            if h.context.is_empty() {
                "(empty)".to_owned()
            } else {
                h.context.to_string()
            }
        );
        out!("wrapped key  {} bytes", h.wrapped_key.ciphertext().len());
        out!(
            "plaintext    {} bytes (header {} bytes)",
            h.plaintext_len(),
            h.encoded_len()
        );
    }
}

fn policy_json(p: &Policy) -> Value {
    json!({
        "policy": p.name,
        "active": p.active.to_string(),
        "decrypt_only": p.decrypt_only.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "lease": {
            "max_age_secs": p.lease.max_age.as_secs(),
            "max_payloads": p.lease.max_payloads,
            "max_bytes": p.lease.max_bytes,
            "renew_before_secs": p.lease.renew_before.as_secs(),
        },
        "compression": p.compression.as_ref().map(|c| json!({"algorithm": c.algorithm, "min_size": c.min_size, "level": c.level})),
        "context": p.context,
        "access": {"roles": p.access.roles, "subjects": p.access.subjects},
        "suite": p.suite.id(),
    })
}

fn print_policy(label: &str, p: &Policy) {
    out!("{label}");
    out!(
        "  active        {}  ({})",
        p.active,
        describe_kek(&p.active)
    );
    for d in &p.decrypt_only {
        out!("  decrypt-only  {d}  ({})", describe_kek(d));
    }
    out!(
        "  lease         max age {:?}, max {} payloads, max {} bytes, renewed {:?} ahead",
        p.lease.max_age,
        p.lease.max_payloads,
        p.lease.max_bytes,
        p.lease.renew_before
    );
    match &p.compression {
        Some(c) => out!(
            "  compression   {} level {} from {} bytes",
            c.algorithm,
            c.level,
            c.min_size
        ),
        None => out!("  compression   none"),
    }
    out!("  suite         {}", p.suite);
    if !p.context.is_empty() {
        let ctx: Vec<String> = p.context.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out!("  context       namespace=<ns>, {}", ctx.join(", "));
    }
    if !p.access.roles.is_empty() || !p.access.subjects.is_empty() {
        out!(
            "  access        roles {:?}, subjects {:?}",
            p.access.roles,
            p.access.subjects
        );
    }
}

fn check(file: &Path, namespaces: &[String], json: bool) -> Result<(), Failure> {
    let config = load_config(file)?;
    // The codec server's [server] section is validated too (without starting anything).
    let server = sealbox_server::ServerConfig::from_file(file)
        .map_err(|e| fail(2, format!("invalid policy file:\n{e}")))?;
    if let Err(e) = server.check_exposure() {
        return Err(fail(
            2,
            format!("invalid policy file:\n{}: [server]: {e}", file.display()),
        ));
    }
    let resolve = |ns: &String| -> Result<(String, EncryptionContext), Failure> {
        let p = config.policy_for(ns);
        let ctx = p
            .context_for(ns)
            .map_err(|e| fail(2, format!("namespace `{ns}`: {e}")))?;
        Ok((p.name.clone(), ctx))
    };
    if json {
        let mut lookups = Vec::new();
        for ns in namespaces {
            let (policy, ctx) = resolve(ns)?;
            let ctx: serde_json::Map<String, Value> =
                ctx.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
            lookups.push(json!({"namespace": ns, "policy": policy, "context": ctx}));
        }
        let v = json!({
            "file": config.source,
            "valid": true,
            "default": policy_json(&config.default),
            "rules": config.rules.iter().map(|r| {
                let mut v = policy_json(&r.policy);
                v["namespace"] = json!(r.pattern);
                v["line"] = json!(r.line);
                v
            }).collect::<Vec<_>>(),
            "namespaces": lookups,
        });
        out!("{v:#}");
        return Ok(());
    }
    out!(
        "{}: valid ({} rule(s); first match wins, everything else gets the default)",
        config.source,
        config.rules.len()
    );
    for r in &config.rules {
        print_policy(
            &format!("namespace `{}` (line {})", r.pattern, r.line),
            &r.policy,
        );
    }
    print_policy("every other namespace (default)", &config.default);
    for ns in namespaces {
        let (policy, ctx) = resolve(ns)?;
        out!("namespace `{ns}` -> {policy}; context {ctx}");
    }
    Ok(())
}

async fn keys_test(file: &Path, json: bool) -> Result<(), Failure> {
    let config = load_config(file)?;
    let context = EncryptionContext::new()
        .with("namespace", "sealbox-keys-test")
        .map_err(|e| fail(1, e.to_string()))?;
    let mut reports = Vec::new();
    let mut failed = 0;
    for uri in config.keks() {
        let report = test_kek(uri, &config, &context).await;
        if report["ok"] != json!(true) {
            failed += 1;
        }
        if !json {
            match report["error"].as_str() {
                None => out!(
                    "ok    {uri}  connect {} ms, wrap+unwrap {} ms",
                    report["connect_ms"],
                    report["round_trip_ms"]
                ),
                Some(e) => out!("FAIL  {uri}  {e}"),
            }
        }
        reports.push(report);
    }
    if json {
        out!("{:#}", json!({"keks": reports, "failed": failed}));
    }
    if failed > 0 {
        return Err(fail(
            1,
            format!(
                "{failed} KEK(s) failed; fix credentials, permissions or the policy before going live"
            ),
        ));
    }
    Ok(())
}

async fn test_kek(uri: &KekUri, config: &PolicyConfig, context: &EncryptionContext) -> Value {
    let started = Instant::now();
    let provider = match connect(uri, config).await {
        Ok(p) => p,
        Err(e) => {
            return json!({"uri": uri.to_string(), "ok": false, "stage": "connect", "error": e.to_string()});
        }
    };
    let connect_ms = started.elapsed().as_millis() as u64;
    let started = Instant::now();
    let round_trip = async {
        let generated = provider.generate_data_key(context).await?;
        let back = provider.unwrap(&generated.wrapped, context).await?;
        if back.expose_secret() != generated.data_key.expose_secret() {
            return Err(sealbox_core::ProviderError::new(
                provider.provider_id(),
                provider.key_id(),
                sealbox_core::ProviderErrorKind::Protocol,
                "unwrap returned a different key",
            ));
        }
        Ok(generated.wrapped.kek().clone())
    };
    match round_trip.await {
        Ok(kek) => json!({
            "uri": uri.to_string(),
            "ok": true,
            "key_id": kek.key_id(),
            "key_version": kek.key_version(),
            "connect_ms": connect_ms,
            "round_trip_ms": started.elapsed().as_millis() as u64,
        }),
        Err(e) => {
            json!({"uri": uri.to_string(), "ok": false, "stage": "wrap/unwrap", "error": e.to_string()})
        }
    }
}
