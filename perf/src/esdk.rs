//! Section 2: Sealbox beside the AWS Encryption SDK for Rust (`aws-esdk`), encrypt + decrypt
//! of 1 KiB messages, one thread, in the same run.
//!
//! The ESDK is set up as its own raw-AES-keyring example does, with the committing,
//! **non-signing** suite `AlgAes256GcmHkdfSha512CommitKey` (the default suite also signs
//! with ECDSA P-384, which Sealbox does not do) and the default commitment policy
//! (require-encrypt-require-decrypt); an encryption context of one field, as Sealbox's. Each
//! ESDK message gets a fresh data key, wrapped by the raw AES key on encrypt and unwrapped on
//! decrypt: the ESDK has no data-key reuse with a raw keyring.
//!
//! Sealbox is measured twice: as deployed (a warm key-ring: the data key comes from a lease
//! and the open from the unwrap cache), and like for like (per message a fresh data key
//! wrapped by the local KEK, sealed, then unwrapped by the KEK and opened: the same work the
//! ESDK's raw keyring does).

use std::collections::HashMap;
use std::hint::black_box;

use aws_esdk::client as esdk_client;
use aws_esdk::material_providers::client as mpl_client;
use aws_esdk::material_providers::types::keyring::KeyringRef;
use aws_esdk::material_providers::types::material_providers_config::MaterialProvidersConfig;
use aws_esdk::material_providers::types::{AesWrappingAlg, EsdkAlgorithmSuiteId};
use aws_esdk::types::aws_encryption_sdk_config::AwsEncryptionSdkConfig;
use aws_smithy_types::Blob;
use sealbox_core::{KeyProvider, open_envelope, seal_with_data_key};

use crate::fmt::{Table, int, ratio};
use crate::measure::{Case, Config, measure};
use crate::{Fixture, Report, mem, progress, random_key};

/// Message size of section 2.
const SIZE: usize = 1 << 10;
/// Issue #16's target: Sealbox ≥ 100× the ESDK's messages per second.
const TARGET: f64 = 100.0;

const ESDK: &str =
    "AWS Encryption SDK (aws-esdk 1.2.4, raw AES keyring, AlgAes256GcmHkdfSha512CommitKey)";
const SEALBOX_WARM: &str = "Sealbox Keyring (warm key-ring: lease + unwrap cache)";
const SEALBOX_WARM_S2: &str = "Sealbox Keyring, suite 0x0002 (opt-in; warm key-ring)";
const SEALBOX_FRESH: &str = "Sealbox core, fresh data key per message (local KEK wrap + unwrap)";

/// The ESDK side: client, keyring and context, set up once.
struct Esdk {
    client: esdk_client::Client,
    keyring: KeyringRef,
    context: HashMap<String, String>,
}

impl Esdk {
    fn new(rt: &tokio::runtime::Runtime) -> Result<Self, String> {
        let err = |what: &str, e: &dyn std::fmt::Debug| format!("aws-esdk {what}: {e:?}");
        let config = AwsEncryptionSdkConfig::builder()
            .build()
            .map_err(|e| err("config", &e))?;
        let client = esdk_client::Client::from_conf(config).map_err(|e| err("client", &e))?;
        let mpl = mpl_client::Client::from_conf(
            MaterialProvidersConfig::builder()
                .build()
                .map_err(|e| err("material providers config", &e))?,
        )
        .map_err(|e| err("material providers", &e))?;
        let keyring = rt
            .block_on(
                mpl.create_raw_aes_keyring()
                    .key_name("perf")
                    .key_namespace("sealbox-perf")
                    .wrapping_key(random_key().to_vec())
                    .wrapping_alg(AesWrappingAlg::AlgAes256GcmIv12Tag16)
                    .send(),
            )
            .map_err(|e| err("raw AES keyring", &e))?;
        let context = HashMap::from([("namespace".to_owned(), "default".to_owned())]);
        Ok(Self {
            client,
            keyring,
            context,
        })
    }

    async fn encrypt(&self, plaintext: &[u8]) -> Result<Blob, String> {
        self.client
            .encrypt()
            .plaintext(plaintext)
            .keyring(self.keyring.clone())
            .encryption_context(self.context.clone())
            .algorithm_suite_id(EsdkAlgorithmSuiteId::AlgAes256GcmHkdfSha512CommitKey)
            .send()
            .await
            .map_err(|e| format!("aws-esdk encrypt: {e:?}"))?
            .ciphertext
            .ok_or_else(|| "aws-esdk encrypt returned no ciphertext".to_owned())
    }

    async fn decrypt(&self, ciphertext: Blob) -> Result<Blob, String> {
        self.client
            .decrypt()
            .ciphertext(ciphertext)
            .keyring(self.keyring.clone())
            .encryption_context(self.context.clone())
            .send()
            .await
            .map_err(|e| format!("aws-esdk decrypt: {e:?}"))?
            .plaintext
            .ok_or_else(|| "aws-esdk decrypt returned no plaintext".to_owned())
    }

    async fn round_trip(&self, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let ct = self.encrypt(plaintext).await?;
        Ok(self.decrypt(ct).await?.into_inner())
    }
}

/// Sealbox like for like: a fresh data key per message from the local KEK, sealed, unwrapped
/// again by the KEK and opened.
async fn sealbox_fresh_round_trip(fx: &Fixture, plaintext: &[u8]) -> Vec<u8> {
    let generated = fx
        .kek
        .generate_data_key(&fx.ctx)
        .await
        .expect("generate data key");
    let envelope = seal_with_data_key(&generated.data_key, &generated.wrapped, &fx.ctx, plaintext)
        .expect("seal");
    drop(generated);
    let wrapped = sealbox_core::inspect(&envelope)
        .expect("header")
        .wrapped_key;
    let key = fx.kek.unwrap(&wrapped, &fx.ctx).await.expect("unwrap");
    open_envelope(&key, &envelope, &fx.ctx).expect("open")
}

/// Runs section 2 and writes its table to the report; returns the CSV rows
/// (`implementation,median_ns,q1_ns,q3_ns,messages_per_s`).
pub fn section2(fx: &Fixture, cfg: &Config, report: &mut Report) -> Result<String, String> {
    let input = mem::pattern(SIZE, 2);
    let esdk = Esdk::new(&fx.rt)?;
    // Every implementation round-trips, and the ESDK's message is not the plaintext.
    let ct = fx.rt.block_on(esdk.encrypt(&input))?;
    if ct.as_ref().windows(32).any(|w| w == &input[..32]) {
        return Err("aws-esdk ciphertext contains its plaintext".into());
    }
    let esdk_overhead = ct.as_ref().len() - SIZE;
    if fx.rt.block_on(esdk.decrypt(ct))?.as_ref() != input.as_slice() {
        return Err("aws-esdk round trip returned other bytes".into());
    }
    assert_eq!(fx.rt.block_on(sealbox_fresh_round_trip(fx, &input)), input);
    assert_eq!(fx.open(&fx.seal(&input)), input);
    assert_eq!(fx.open(&fx.seal2(&input)), input);

    progress("section 2: aws-esdk vs Sealbox, 1 KiB encrypt + decrypt");
    let mut cases = vec![
        Case::new(ESDK, |n| {
            fx.rt.block_on(async {
                for _ in 0..n {
                    black_box(esdk.round_trip(black_box(&input)).await.expect("aws-esdk"));
                }
            })
        }),
        Case::new(SEALBOX_WARM, |n| {
            fx.rt.block_on(async {
                for _ in 0..n {
                    let env = fx.writer.seal(&fx.ctx, black_box(&input)).await;
                    let env = env.expect("seal");
                    black_box(fx.reader.open(&fx.ctx, &env).await.expect("open"));
                }
            })
        }),
        Case::new(SEALBOX_WARM_S2, |n| {
            fx.rt.block_on(async {
                for _ in 0..n {
                    let env = fx.writer2.seal(&fx.ctx, black_box(&input)).await;
                    let env = env.expect("seal");
                    black_box(fx.reader.open(&fx.ctx, &env).await.expect("open"));
                }
            })
        }),
        Case::new(SEALBOX_FRESH, |n| {
            fx.rt.block_on(async {
                for _ in 0..n {
                    black_box(sealbox_fresh_round_trip(fx, black_box(&input)).await);
                }
            })
        }),
    ];
    let stats = measure(&mut cases, cfg);
    drop(cases);
    let esdk_ns = stats[0].median_ns;

    report.say("## 2. Beside the AWS Encryption SDK for Rust\n\n");
    report.para(&format!(
        "Encrypt then decrypt one {} message, one thread, same context (`namespace = default`). \
         The ESDK as its raw-AES-keyring example sets it up, with the committing non-signing suite \
         and the default commitment policy; its message carries {esdk_overhead} bytes of overhead \
         at this size. Ratio = Sealbox's messages per second ÷ the ESDK's (target ≥ {}×, \
         Sealbox as deployed).",
        crate::fmt::size_label(SIZE),
        int(TARGET),
    ));
    let mut t = Table::new(&[
        "implementation",
        "encrypt + decrypt µs",
        "messages/s",
        "ratio to the ESDK",
    ]);
    let mut csv = String::from("implementation,median_ns,q1_ns,q3_ns,messages_per_s\n");
    for (name, s) in [ESDK, SEALBOX_WARM, SEALBOX_WARM_S2, SEALBOX_FRESH]
        .iter()
        .zip(&stats)
    {
        let per_s = 1e9 / s.median_ns;
        t.row(vec![
            (*name).to_owned(),
            format!("{:.2} (± {:.0}%)", s.median_ns / 1e3, s.spread_pct()),
            int(per_s),
            ratio(esdk_ns / s.median_ns),
        ]);
        csv.push_str(&format!(
            "\"{name}\",{:.0},{:.0},{:.0},{per_s:.0}\n",
            s.median_ns, s.q1_ns, s.q3_ns
        ));
    }
    report.table(&t);
    let warm = esdk_ns / stats[1].median_ns;
    let warm2 = esdk_ns / stats[2].median_ns;
    let fresh = esdk_ns / stats[3].median_ns;
    report.para(&format!(
        "**Target ≥ {}× (Sealbox as deployed, default suite 0x0001): {}× — {}.** With suite \
         0x0002 (opt-in, no per-payload HKDF-Extract): {}× — {}. Like for like (a fresh data \
         key per message, wrapped and unwrapped by a local KEK, as the ESDK's raw keyring does): \
         {}×.",
        int(TARGET),
        ratio(warm).trim_end_matches('×'),
        if warm >= TARGET { "met" } else { "missed" },
        ratio(warm2).trim_end_matches('×'),
        if warm2 >= TARGET { "met" } else { "missed" },
        ratio(fresh).trim_end_matches('×'),
    ));
    Ok(csv)
}
