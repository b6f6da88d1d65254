//! A Temporal workflow whose inputs, results and failures are encrypted with Sealbox.
//!
//! `worker` runs [`ChargeWorkflow`] and [`PaymentActivities`]; `starter` starts one workflow
//! and prints its result. Both build their codec from a key policy file
//! (`keyring-config/dev.toml`, the local development KEK, by default), so the worker and the
//! starter must use the same policy. See `docs/temporal.md`.
// The workflow and activity macros generate public items without docs.
#![allow(unreachable_pub, missing_docs)]

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use sealbox_policy::PolicyKeyrings;
use sealbox_temporal::{CodecChain, data_converter};
use serde::{Deserialize, Serialize};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, ApplicationFailure, WorkflowContext, WorkflowResult};

/// The task queue of the example.
pub const TASK_QUEUE: &str = "sealbox-example";

/// A boxed error.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The workflow input: it holds a card number, which must never reach Temporal in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Who pays.
    pub customer: String,
    /// The sensitive part.
    pub card_number: String,
    /// Amount; zero makes the charge fail (to show that failures are encrypted too).
    pub amount_cents: u64,
}

/// Charges an order through an activity and returns the receipt.
#[workflow]
#[derive(Default)]
pub struct ChargeWorkflow;

#[workflow_methods]
impl ChargeWorkflow {
    /// Runs the charge activity once and returns its receipt.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, order: Order) -> WorkflowResult<String> {
        let receipt = ctx
            .execute_activity(
                PaymentActivities::charge,
                order,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(receipt)
    }
}

/// The example's activities.
pub struct PaymentActivities;

#[activities]
impl PaymentActivities {
    /// "Charges" the card: returns a receipt naming it, or fails (not retryable) with a
    /// message naming it when the amount is zero.
    #[activity]
    pub async fn charge(_ctx: ActivityContext, order: Order) -> Result<String, ActivityError> {
        if order.amount_cents == 0 {
            return Err(ActivityError::application(
                ApplicationFailure::non_retryable(format!(
                    "card {} of {} declined: amount is zero",
                    order.card_number, order.customer
                )),
            ));
        }
        Ok(format!(
            "charged {} cents to card {} for {}",
            order.amount_cents, order.card_number, order.customer
        ))
    }
}

/// Input of [`BenchWorkflow`]: run `activities` activities one after the other, each given
/// the previous one's result, starting from `payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchInput {
    /// Activities in a row.
    pub activities: u32,
    /// What every input and result carries (encrypted like any payload).
    pub payload: String,
}

/// The performance harness's workload (issue #16, section 4; `starter bench`): a chain of
/// [`BenchActivities::echo`] activities, so that every workflow input, activity input,
/// activity result and workflow result is a payload of the same size.
#[workflow]
#[derive(Default)]
pub struct BenchWorkflow;

#[workflow_methods]
impl BenchWorkflow {
    /// Runs the chain and returns the last result (equal to the input's payload).
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: BenchInput) -> WorkflowResult<String> {
        let options = || ActivityOptions::start_to_close_timeout(Duration::from_secs(60));
        let mut last = input.payload;
        for _ in 0..input.activities {
            last = ctx
                .execute_activity(BenchActivities::echo, last, options())
                .await?;
        }
        Ok(last)
    }
}

/// The benchmark's activity.
pub struct BenchActivities;

#[activities]
impl BenchActivities {
    /// Returns its input.
    #[activity]
    pub async fn echo(_ctx: ActivityContext, payload: String) -> Result<String, ActivityError> {
        Ok(payload)
    }
}

/// The codec of a worker or starter: the policy's, or none when `SEALBOX_CODEC=none` (the
/// performance harness's baseline: payloads go to Temporal as plain JSON).
pub async fn codec_from_env(s: &Settings) -> Result<Option<CodecChain>, BoxError> {
    if std::env::var("SEALBOX_CODEC").is_ok_and(|v| v == "none") {
        eprintln!(
            "WARNING: SEALBOX_CODEC=none: payloads go to Temporal UNENCRYPTED \
             (the performance harness's baseline; never set it anywhere else)"
        );
        return Ok(None);
    }
    Ok(Some(codec(&s.policy, &s.namespace).await?))
}

/// The codec chain that the key policy at `policy_path` asks for in `namespace`.
pub async fn codec(policy_path: &str, namespace: &str) -> Result<CodecChain, BoxError> {
    let policy = Arc::new(PolicyKeyrings::load(policy_path).await?);
    Ok(CodecChain::from_policy(policy, namespace)?)
}

/// A client of `namespace` on the Temporal frontend at `address` (`http://host:port`) whose
/// data converter encrypts with `codec` (failure messages and stack traces included), or the
/// SDK's default data converter when `codec` is `None`.
pub async fn connect(
    address: &str,
    namespace: &str,
    codec: impl Into<Option<CodecChain>>,
) -> Result<Client, BoxError> {
    let url = url::Url::parse(address).map_err(|e| format!("TEMPORAL_ADDRESS `{address}`: {e}"))?;
    let connection = Connection::connect(
        ConnectionOptions::new(url)
            .identity("sealbox-example".to_owned())
            .build(),
    )
    .await?;
    let options = match codec.into() {
        Some(codec) => ClientOptions::new(namespace.to_owned())
            .data_converter(data_converter(codec))
            .build(),
        None => ClientOptions::new(namespace.to_owned()).build(),
    };
    Ok(Client::new(connection, options)?)
}

/// Settings from the environment: `TEMPORAL_ADDRESS` (default `http://localhost:7233`),
/// `TEMPORAL_NAMESPACE` (default `default`), `SEALBOX_POLICY` (default
/// `keyring-config/dev.toml`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The frontend URL.
    pub address: String,
    /// The namespace.
    pub namespace: String,
    /// The key policy file.
    pub policy: String,
}

impl Settings {
    /// Reads the environment.
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Self {
            address: var("TEMPORAL_ADDRESS", "http://localhost:7233"),
            namespace: var("TEMPORAL_NAMESPACE", "default"),
            policy: var("SEALBOX_POLICY", "keyring-config/dev.toml"),
        }
    }
}
