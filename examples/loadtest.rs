//! Intake load test: drives a webhook endpoint over HTTP with signed `pull_request` deliveries
//! and reports throughput and latency percentiles; also serves the bare baseline handler it is
//! compared with. `scripts/loadtest-intake.sh` runs both side by side.
//!
//! ```sh
//! cargo run --release --example loadtest -- bare 127.0.0.1:18090
//! cargo run --release --example loadtest -- drive http://127.0.0.1:8080/webhooks/github \
//!     --secret S --payload FILE --concurrency 16 --seconds 10
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::post;
use tollgate::intake::MAX_BODY_BYTES;
use tollgate::intake::verify::github_signature;

/// Most requests a single run may send, so a run always ends on its own.
const MAX_REQUESTS: usize = 5_000_000;

#[derive(Debug)]
struct DriveArgs {
    url: String,
    secret: String,
    payload: std::path::PathBuf,
    concurrency: usize,
    seconds: u64,
}

fn parse_drive(mut args: impl Iterator<Item = String>) -> anyhow::Result<DriveArgs> {
    let url = args.next().context("drive needs a URL")?;
    let mut parsed = DriveArgs {
        url,
        secret: String::new(),
        payload: Default::default(),
        concurrency: 16,
        seconds: 10,
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

async fn drive(args: DriveArgs) -> anyhow::Result<()> {
    let body = Bytes::from(
        std::fs::read(&args.payload)
            .with_context(|| format!("cannot read payload {}", args.payload.display()))?,
    );
    let signature = github_signature(&args.secret, &body);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let (client, url, body, signature, sent) = (
            client.clone(),
            args.url.clone(),
            body.clone(),
            signature.clone(),
            sent.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline
                && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_REQUESTS
            {
                let n = latencies.len() + errors;
                let begin = Instant::now();
                let result = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "pull_request")
                    .header("x-github-delivery", format!("load-{worker}-{n}"))
                    .header("x-hub-signature-256", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match result {
                    Ok(response) if response.status() == StatusCode::ACCEPTED => {
                        let _ = response.bytes().await;
                        latencies.push(begin.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mut l, e) = worker.await?;
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = started.elapsed();
    report(&args.url, body.len(), &mut latencies, errors, elapsed);
    Ok(())
}

fn report(url: &str, size: usize, latencies: &mut [Duration], errors: usize, elapsed: Duration) {
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    println!(
        "{url} body={size}B ok={} errors={errors} rps={:.0} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
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
        Some("drive") => drive(parse_drive(args)?).await,
        _ => bail!(
            "usage: loadtest bare ADDR | loadtest drive URL --secret S --payload FILE [--concurrency N] [--seconds S]"
        ),
    }
}
