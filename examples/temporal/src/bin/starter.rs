//! Starts one `ChargeWorkflow` and prints its result.
//!
//! `starter [CUSTOMER] [CARD] [AMOUNT_CENTS]` (an amount of 0 makes the charge fail).
use sealbox_example_temporal::{
    BoxError, ChargeWorkflow, Order, Settings, TASK_QUEUE, codec, connect,
};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let s = Settings::from_env();
    let mut args = std::env::args().skip(1);
    let order = Order {
        customer: args.next().unwrap_or_else(|| "Ada Lovelace".into()),
        card_number: args.next().unwrap_or_else(|| "4111 1111 1111 1111".into()),
        amount_cents: args.next().map(|a| a.parse()).transpose()?.unwrap_or(1999),
    };
    let client = connect(
        &s.address,
        &s.namespace,
        codec(&s.policy, &s.namespace).await?,
    )
    .await?;
    let id = format!("charge-{}", std::process::id());
    let handle = client
        .start_workflow(
            ChargeWorkflow::run,
            order,
            WorkflowStartOptions::new(TASK_QUEUE, &id).build(),
        )
        .await?;
    eprintln!("started workflow {id}");
    match handle.get_result(WorkflowGetResultOptions::default()).await {
        Ok(receipt) => {
            eprintln!("result: {receipt}");
            Ok(())
        }
        Err(e) => Err(format!("workflow {id} failed: {e}").into()),
    }
}
