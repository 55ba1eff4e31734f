//! Intake load test: drives a webhook endpoint over HTTP with signed `pull_request` deliveries
//! (each with its own delivery id) and reports throughput and latency percentiles; also serves
//! the bare baseline handler it is compared with, and the floor (bare plus signature check and
//! parse: the least an authenticating intake can do). `scripts/loadtest-intake.sh` runs tollgate
//! (dry-run, durable on SQLite, durable on PostgreSQL) and the baseline side by side.
//!
//! Two ways to drive: closed loop (`--concurrency N` clients, each sending its next request
//! when the last is answered: the most the target sustains) and open loop (`--rate R` requests
//! per second on a fixed schedule, latency counted from when each request was due, so a stall
//! shows up in the percentiles instead of slowing the sender down).
//!
//! ```sh
//! cargo run --release --example loadtest -- bare 127.0.0.1:18090
//! cargo run --release --example loadtest -- floor 127.0.0.1:18093 SECRET
//! cargo run --release --example loadtest -- drive http://127.0.0.1:8080/webhooks/github \
//!     --secret S --payload FILE --concurrency 16 --seconds 10
//! cargo run --release --example loadtest -- drive http://127.0.0.1:8080/webhooks/github \
//!     --secret S --payload FILE --rate 500 --seconds 10
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tollgate::intake::MAX_BODY_BYTES;
use tollgate::intake::verify::{github_signature, verify_github_signature};

/// Most requests a single closed-loop run may send, so a run always ends on its own.
const MAX_REQUESTS: usize = 5_000_000;

#[derive(Debug)]
struct DriveArgs {
    url: String,
    secret: String,
    payload: std::path::PathBuf,
    concurrency: usize,
    seconds: u64,
    /// Open loop at this many requests per second (closed loop when absent).
    rate: Option<u32>,
    /// Printed before the figures.
    label: Option<String>,
}

fn parse_drive(mut args: impl Iterator<Item = String>) -> anyhow::Result<DriveArgs> {
    let url = args.next().context("drive needs a URL")?;
    let mut parsed = DriveArgs {
        url,
        secret: String::new(),
        payload: Default::default(),
        concurrency: 16,
        seconds: 10,
        rate: None,
        label: None,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secret" => parsed.secret = value,
            "--payload" => parsed.payload = value.into(),
            "--concurrency" => parsed.concurrency = value.parse()?,
            "--seconds" => parsed.seconds = value.parse()?,
            "--rate" => parsed.rate = Some(value.parse()?),
            "--label" => parsed.label = Some(value),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(parsed)
}

/// The baseline: a handler that reads the whole body and answers 202, nothing else.
async fn bare(listen: &str) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/webhooks/github",
            post(|body: Bytes| async move {
                std::hint::black_box(body.len());
                StatusCode::ACCEPTED
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("bare handler listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The floor: the bare handler plus the two steps no intake that authenticates may skip,
/// checking the signature over the body and parsing it (tollgate's own functions for both),
/// and nothing else: no store, no logging, no metrics. No durable intake can outrun it, so
/// it shows how much of the bare handler's throughput is left once the work is mandatory.
async fn floor(listen: &str, secret: &str) -> anyhow::Result<()> {
    let secrets = Arc::new(vec![secrecy::SecretString::from(secret.to_owned())]);
    let app = Router::new()
        .route(
            "/webhooks/github",
            post(move |headers: HeaderMap, body: Bytes| {
                let secrets = Arc::clone(&secrets);
                async move {
                    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
                    if verify_github_signature(signature, &body, &secrets).is_err() {
                        return StatusCode::UNAUTHORIZED;
                    }
                    let event = headers
                        .get("x-github-event")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    match tollgate::intake::github::parse(event, &body) {
                        Ok(event) => {
                            std::hint::black_box(event);
                            StatusCode::ACCEPTED
                        }
                        Err(_) => StatusCode::BAD_REQUEST,
                    }
                }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("floor handler listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// One signed delivery, ready to send.
#[derive(Clone)]
struct Delivery {
    client: reqwest::Client,
    url: String,
    body: Bytes,
    signature: String,
}

impl Delivery {
    /// Sends it under `id`; `true` when it was accepted (202).
    async fn send(&self, id: String) -> bool {
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", &self.signature)
            .body(self.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == StatusCode::ACCEPTED => {
                response.bytes().await.is_ok()
            }
            _ => false,
        }
    }
}

async fn drive(args: DriveArgs) -> anyhow::Result<()> {
    let body = Bytes::from(
        std::fs::read(&args.payload)
            .with_context(|| format!("cannot read payload {}", args.payload.display()))?,
    );
    let delivery = Delivery {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency.max(256))
            .build()?,
        url: args.url.clone(),
        signature: github_signature(&args.secret, &body),
        body,
    };
    // Delivery ids unique to this run: a repeated id would be acknowledged without a write.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let (mut latencies, errors) = match args.rate {
        Some(rate) => open_loop(&delivery, rate, args.seconds, &run).await?,
        None => closed_loop(&delivery, args.concurrency, args.seconds, &run).await?,
    };
    report(
        &args,
        delivery.body.len(),
        &mut latencies,
        errors,
        started.elapsed(),
    );
    Ok(())
}

/// `concurrency` clients, each sending its next delivery when the last one is answered.
async fn closed_loop(
    delivery: &Delivery,
    concurrency: usize,
    seconds: u64,
    run: &str,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..concurrency {
        let (delivery, sent, run) = (delivery.clone(), Arc::clone(&sent), run.to_owned());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS {
                let n = latencies.len() + errors;
                let begin = Instant::now();
                if delivery.send(format!("load-{run}-{client}-{n}")).await {
                    latencies.push(begin.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for client in clients {
        let (mut l, e) = client.await?;
        latencies.append(&mut l);
        errors += e;
    }
    Ok((latencies, errors))
}

/// `rate` deliveries per second on a fixed schedule, each on its own task, each measured from
/// the moment it was due.
async fn open_loop(
    delivery: &Delivery,
    rate: u32,
    seconds: u64,
    run: &str,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let total = usize::try_from(u64::from(rate) * seconds)?;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        let due = start + period.mul_f64(n as f64);
        tokio::time::sleep_until(due).await;
        let (delivery, id) = (delivery.clone(), format!("load-{run}-{n}"));
        tasks.push(tokio::spawn(async move {
            delivery.send(id).await.then(|| due.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for task in tasks {
        match task.await? {
            Some(latency) => latencies.push(latency),
            None => errors += 1,
        }
    }
    Ok((latencies, errors))
}

fn report(
    args: &DriveArgs,
    size: usize,
    latencies: &mut [Duration],
    errors: usize,
    elapsed: Duration,
) {
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    let mode = match args.rate {
        Some(rate) => format!("{rate}/s open loop"),
        None => format!("{} clients", args.concurrency),
    };
    println!(
        "{:<22} {mode:<17} body={size}B ok={} errors={errors} rps={:.0} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        args.label.as_deref().unwrap_or(&args.url),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("bare") => bare(&args.next().unwrap_or_else(|| "127.0.0.1:18090".into())).await,
        Some("floor") => {
            let listen = args.next().unwrap_or_else(|| "127.0.0.1:18093".into());
            let secret = args.next().context("floor needs the webhook secret")?;
            floor(&listen, &secret).await
        }
        Some("drive") => drive(parse_drive(args)?).await,
        _ => bail!(
            "usage: loadtest bare ADDR | loadtest floor ADDR SECRET | loadtest drive URL --secret S --payload FILE \
             [--concurrency N | --rate PER_SECOND] [--seconds S] [--label TEXT]"
        ),
    }
}
