//! Runs the example worker until Ctrl-C.
use sealbox_example_temporal::{
    BenchActivities, BenchWorkflow, BoxError, ChargeWorkflow, PaymentActivities, Settings,
    TASK_QUEUE, codec_from_env, connect,
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
    let codec = codec_from_env(&s).await?;
    let encrypted = codec.is_some();
    let client = connect(&s.address, &s.namespace, codec).await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(TASK_QUEUE)
        .register_workflow::<ChargeWorkflow>()?
        .register_activities(PaymentActivities)
        .register_workflow::<BenchWorkflow>()?
        .register_activities(BenchActivities)
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop();
    });
    eprintln!(
        "worker: namespace {} task queue {TASK_QUEUE}, {}; Ctrl-C stops",
        s.namespace,
        if encrypted {
            format!("policy {}", s.policy)
        } else {
            "no codec (SEALBOX_CODEC=none)".to_owned()
        }
    );
    worker.run().await?;
    Ok(())
}
