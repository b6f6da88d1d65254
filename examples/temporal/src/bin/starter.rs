//! Starts one `ChargeWorkflow` and prints its result.
//!
//! `starter [CUSTOMER] [CARD] [AMOUNT_CENTS]` (an amount of 0 makes the charge fail).
//!
//! `starter bench COUNT ACTIVITIES BYTES [CONCURRENCY] [text|random]` (the performance
//! harness's workload): starts COUNT `BenchWorkflow`s of ACTIVITIES activities carrying a
//! BYTES-long payload — repeated text (`text`, the default: gRPC's gzip shrinks it to almost
//! nothing) or pseudo-random letters and digits (`random`: as incompressible as ciphertext)
//! — at most CONCURRENCY (default 64) at a time, checks every result and prints one JSON line
//! (`workflows`, `seconds`, `first_id`). `SEALBOX_CODEC=none` runs without the codec; the
//! worker must be started the same way.
use std::time::Instant;

use futures::StreamExt as _;
use sealbox_example_temporal::{
    BenchInput, BenchWorkflow, BoxError, ChargeWorkflow, Order, Settings, TASK_QUEUE,
    codec_from_env, connect,
};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let s = Settings::from_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client = connect(&s.address, &s.namespace, codec_from_env(&s).await?).await?;
    if args.first().map(String::as_str) == Some("bench") {
        return bench(&client, &args[1..]).await;
    }
    let mut args = args.into_iter();
    let order = Order {
        customer: args.next().unwrap_or_else(|| "Ada Lovelace".into()),
        card_number: args.next().unwrap_or_else(|| "4111 1111 1111 1111".into()),
        amount_cents: args.next().map(|a| a.parse()).transpose()?.unwrap_or(1999),
    };
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

async fn bench(client: &Client, args: &[String]) -> Result<(), BoxError> {
    let usage = "usage: starter bench COUNT ACTIVITIES BYTES [CONCURRENCY] [text|random]";
    let arg = |i: usize, default: Option<usize>| -> Result<usize, BoxError> {
        match (args.get(i), default) {
            (Some(a), _) => Ok(a.parse().map_err(|_| format!("`{a}`: {usage}"))?),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(usage.into()),
        }
    };
    let (count, activities, bytes, concurrency) = (
        arg(0, None)?,
        arg(1, None)?,
        arg(2, None)?,
        arg(3, Some(64))?,
    );
    let payload = match args.get(4).map(String::as_str) {
        None | Some("text") => "sealbox ".repeat(bytes.div_ceil(8))[..bytes].to_owned(),
        Some("random") => random_text(bytes),
        Some(other) => return Err(format!("`{other}`: {usage}").into()),
    };
    let run = std::process::id();
    let started = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..count)
        .map(|i| {
            let id = format!("bench-{run}-{i}");
            let input = BenchInput {
                activities: u32::try_from(activities).unwrap_or(u32::MAX),
                payload: payload.clone(),
            };
            let want = &payload;
            let options = WorkflowStartOptions::new(TASK_QUEUE, &id).build();
            async move {
                let started = client
                    .start_workflow(BenchWorkflow::run, input, options)
                    .await;
                let handle = started.map_err(|e| format!("start {id}: {e}"))?;
                match handle.get_result(WorkflowGetResultOptions::default()).await {
                    Ok(r) if &r == want => Ok(()),
                    Ok(_) => Err(format!("{id}: the result is not the payload")),
                    Err(e) => Err(format!("{id} failed: {e}")),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        let failed = results.iter().filter(|r| r.is_err()).count();
        return Err(format!("{failed} of {count} workflows failed; first: {e}").into());
    }
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{{\"workflows\":{count},\"seconds\":{seconds:.3},\"first_id\":\"bench-{run}-0\"}}"
        );
    }
    Ok(())
}

/// `len` letters and digits from a linear congruential generator seeded by the process ID
/// (its high bits): no repeats for a compressor to find.
fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = u64::from(std::process::id());
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ALPHABET[(state >> 33) as usize % ALPHABET.len()]
    };
    (0..len).map(|_| char::from(next())).collect()
}
