//! Runs the example worker until Ctrl-C.
use sealbox_example_temporal::{
    BoxError, ChargeWorkflow, PaymentActivities, Settings, TASK_QUEUE, codec, connect,
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let s = Settings::from_env();
    let client = connect(
        &s.address,
        &s.namespace,
        codec(&s.policy, &s.namespace).await?,
    )
    .await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(TASK_QUEUE)
        .register_workflow::<ChargeWorkflow>()?
        .register_activities(PaymentActivities)
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop();
    });
    eprintln!(
        "worker: namespace {} task queue {TASK_QUEUE}, policy {}; Ctrl-C stops",
        s.namespace, s.policy
    );
    worker.run().await?;
    Ok(())
}
