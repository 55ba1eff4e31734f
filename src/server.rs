//! The HTTP server: routes, middleware and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::ServerConfig;
use crate::intake::{self, IntakeSecrets, IntakeState};
use crate::metrics::Metrics;
use crate::sink::{DryRunSink, EventSink};

/// How long one request may take, body included. GitHub gives up after 10 s; a client that
/// trickles a body slower than this is cut off instead of holding a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Header carrying the per-request id (set when absent, echoed in the answer).
const REQUEST_ID_HEADER: &str = "x-request-id";

/// Builds the application router around an intake state.
pub fn router(state: IntakeState, metrics: Metrics) -> Router {
    let request_id = header::HeaderName::from_static(REQUEST_ID_HEADER);
    let webhooks = Router::new()
        .route("/webhooks/github", post(intake::github_webhook))
        .route("/webhooks/gitlab", post(intake::gitlab_webhook))
        .with_state(state);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics).with_state(metrics))
        .merge(webhooks)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                )),
        )
}

/// One span per request, carrying the delivery id and, once parsed, the change it is about.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        request_id,
        delivery = intake::claimed_delivery_id(request.headers()),
        event = tracing::field::Empty,
        repo = tracing::field::Empty,
        number = tracing::field::Empty,
        sha = tracing::field::Empty,
    )
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn render_metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    metrics.refresh().await;
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
}

/// Runs `tollgate serve` until SIGTERM or Ctrl-C, then drains in-flight requests for at most
/// the configured drain timeout.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    use anyhow::Context as _;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (TOLLGATE_LISTEN)", config.listen))?;
    let local = listener.local_addr()?;
    let audit = Arc::new(open_audit(&config).await?);
    let public_pem = crate::ledger::keys::public_pem(&audit.key.verifying_key());
    let pages = crate::pages::PagesState {
        pages: crate::pages::Pages::new(audit.ledger.pool().clone()),
        ledger: audit.ledger.clone(),
        key: audit.key.verifying_key(),
    };
    let metrics = Metrics::new();
    let pool = audit.ledger.pool().clone();
    let (sink, workers) = sink_for(&config, audit, &metrics)?;
    let secrets = IntakeSecrets {
        github: config.github.webhook_secrets.clone(),
        gitlab: config.gitlab.webhook_tokens.clone(),
    };
    log_start(&config, local);
    let app = router(IntakeState::new(secrets, metrics.clone(), sink), metrics)
        .merge(crate::pages::router(pages))
        .route(
            SIGNING_KEY_ROUTE,
            get(move || {
                let pem = public_pem.clone();
                async move { ([(header::CONTENT_TYPE, "application/x-pem-file")], pem) }
            }),
        );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Deadlines (review reminders, bypass expiry) are acted on by the replicas that evaluate.
    let scheduler = workers.scheduler(pool, config.jobs).map(|scheduler| {
        Arc::new(scheduler).spawn(config.jobs.scheduler_poll, stop_tx.subscribe())
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stopped| *stopped).await;
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result.context("server failed"),
        () = shutdown_signal() => {}
    }
    tracing::info!(
        drain_timeout_secs = config.drain_timeout.as_secs(),
        "shutting down: no new connections, draining in-flight requests"
    );
    let _ = stop_tx.send(true);
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    let deadline = tokio::time::Instant::now() + config.drain_timeout;
    match tokio::time::timeout_at(deadline, server).await {
        Ok(result) => result.context("server failed while draining")?,
        Err(_) => tracing::warn!("drain timeout reached; exiting with requests still in flight"),
    }
    // Intake is closed: every accepted delivery is in the queue. Finish the evaluations in
    // flight within what is left of the drain timeout; the rest is handed back to the queue.
    if workers.github.is_some() || workers.gitlab.is_some() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if workers.drain(left).await {
            tracing::info!("evaluations in flight finished");
        } else {
            tracing::warn!(
                "drain timeout reached; unfinished evaluations were handed back to the queue"
            );
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn log_start(config: &ServerConfig, local: std::net::SocketAddr) {
    let github = if config.github.webhook_secrets.is_empty() {
        "disabled (no webhook secret)"
    } else {
        "enabled"
    };
    let gitlab = if config.gitlab.webhook_tokens.is_empty() {
        "disabled (no webhook token)"
    } else {
        "enabled"
    };
    tracing::info!(
        listen = %local,
        github_webhooks = github,
        gitlab_webhooks = gitlab,
        mode = config.mode().as_str(),
        "tollgate serve started"
    );
}

/// Where the public key of decision records is served.
pub const SIGNING_KEY_ROUTE: &str = "/.well-known/tollgate-signing-key";

/// Opens the ledger (creating the SQLite file and schema on first start) and loads the
/// signing key (generating one beside the SQLite file on first start).
pub async fn open_audit(config: &ServerConfig) -> anyhow::Result<crate::ledger::Audit> {
    use anyhow::Context as _;
    let ledger = crate::ledger::store::Ledger::open(&config.database_url)
        .await
        .with_context(|| "cannot open the ledger database (TOLLGATE_DATABASE_URL)".to_owned())?;
    let data_dir = match (&config.signing_key_file, config.sqlite_dir()) {
        (Some(_), _) => std::path::PathBuf::new(),
        (None, Some(dir)) => dir,
        (None, None) => anyhow::bail!(
            "with a shared database every replica must sign with the same key: set TOLLGATE_SIGNING_KEY_FILE \
             (create one with `tollgate keygen --out DIR`)"
        ),
    };
    let (key, created) =
        crate::ledger::keys::load_or_create(config.signing_key_file.as_deref(), &data_dir)
            .context("cannot load the signing key (TOLLGATE_SIGNING_KEY_FILE)")?;
    if created {
        tracing::info!(
            dir = %data_dir.display(),
            "generated a decision-record signing key on first start; back it up (TOLLGATE_SIGNING_KEY_FILE to use another)"
        );
    }
    Ok(crate::ledger::Audit { ledger, key })
}

/// The workers behind the sink (to drain on shutdown).
#[derive(Default)]
struct Workers {
    github: Option<Arc<crate::forge::github::worker::GithubWorker>>,
    gitlab: Option<Arc<crate::forge::gitlab::worker::GitlabWorker>>,
}

impl Workers {
    /// The scheduler for the forges this process evaluates (none for an intake-only one).
    fn scheduler(
        &self,
        pool: sqlx::AnyPool,
        jobs: crate::config::JobSettings,
    ) -> Option<crate::scheduler::Scheduler> {
        if jobs.workers == 0 {
            return None;
        }
        let mut handlers: Vec<(String, Arc<dyn crate::scheduler::DeadlineHandler>)> = Vec::new();
        if let Some(github) = &self.github {
            handlers.push(("github:".to_owned(), github.clone()));
        }
        if let Some(gitlab) = &self.gitlab {
            handlers.push(("gitlab:".to_owned(), gitlab.clone()));
        }
        if handlers.is_empty() {
            return None;
        }
        Some(crate::scheduler::Scheduler::new(
            crate::schedule::Schedule::new(pool),
            crate::clock::system(),
            handlers,
        ))
    }

    /// Drains every worker within `timeout` (together); whether all finished.
    async fn drain(&self, timeout: Duration) -> bool {
        let github = async {
            match &self.github {
                Some(worker) => worker.drain(timeout).await,
                None => true,
            }
        };
        let gitlab = async {
            match &self.gitlab {
                Some(worker) => worker.drain(timeout).await,
                None => true,
            }
        };
        let (github, gitlab) = tokio::join!(github, gitlab);
        github && gitlab
    }
}

/// Routes each delivery to its forge's worker; a forge without credentials is dry-run.
struct ForgeSink {
    github: Option<crate::forge::github::worker::GithubSink>,
    gitlab: Option<crate::forge::gitlab::worker::GitlabSink>,
}

/// What a forge without credentials does with its deliveries.
static DRY_RUN: DryRunSink = DryRunSink;

impl EventSink for ForgeSink {
    fn accept(&self, delivery: crate::event::Delivery) -> crate::sink::AcceptFuture<'_> {
        match delivery.forge {
            crate::event::Forge::GitHub => match &self.github {
                Some(sink) => sink.accept(delivery),
                None => DRY_RUN.accept(delivery),
            },
            crate::event::Forge::GitLab => match &self.gitlab {
                Some(sink) => sink.accept(delivery),
                None => DRY_RUN.accept(delivery),
            },
        }
    }
}

fn sink_for(
    config: &ServerConfig,
    audit: Arc<crate::ledger::Audit>,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<dyn EventSink>, Workers)> {
    use crate::forge::github::worker::{GithubSink, GithubWorker, WorkerOptions};
    use crate::forge::gitlab::worker::{self as gitlab, GitlabSink, GitlabWorker};
    use anyhow::Context as _;

    let queue = crate::queue::JobQueue::new(audit.ledger.pool().clone());
    let mut workers = Workers::default();
    if let Some(api) = github_api(config)? {
        workers.github = Some(GithubWorker::start(
            api,
            WorkerOptions {
                check_name: config.check_name.clone(),
                default_policy: config.default_policy.clone(),
                queue: queue.clone(),
                audit: Some(Arc::clone(&audit)),
                jobs: config.jobs,
                metrics: metrics.clone(),
                clock: crate::clock::system(),
                public_url: config.public_url.clone(),
            },
        ));
    }
    if let (Some(url), Some(token)) = (&config.gitlab.url, &config.gitlab.token) {
        let api = crate::forge::gitlab::api::GitlabApi::new(url, token)
            .context("cannot set up the GitLab client (TOLLGATE_GITLAB_*)")?;
        workers.gitlab = Some(GitlabWorker::start(
            api,
            gitlab::WorkerOptions {
                check_name: config.check_name.clone(),
                default_policy: config.default_policy.clone(),
                queue,
                audit: Some(audit),
                jobs: config.jobs,
                metrics: metrics.clone(),
                clock: crate::clock::system(),
                public_url: config.public_url.clone(),
            },
        ));
    }
    if workers.github.is_none() && workers.gitlab.is_none() {
        return Ok((Arc::new(DryRunSink), workers));
    }
    let sink = ForgeSink {
        github: workers.github.clone().map(GithubSink),
        gitlab: workers.gitlab.clone().map(GitlabSink),
    };
    Ok((Arc::new(sink), workers))
}

/// The GitHub client, when GitHub credentials are configured.
fn github_api(
    config: &ServerConfig,
) -> anyhow::Result<Option<crate::forge::github::api::GithubApi>> {
    use crate::config::GithubCredentials;
    use crate::forge::github::api;
    use anyhow::Context as _;

    let auth = match &config.github.credentials {
        GithubCredentials::None => return Ok(None),
        GithubCredentials::Token(token) => api::Auth::Token(token.clone()),
        GithubCredentials::App {
            app_id,
            private_key_file,
        } => {
            let pem = std::fs::read_to_string(private_key_file).with_context(|| {
                format!(
                    "cannot read the GitHub App private key {} (TOLLGATE_GITHUB_PRIVATE_KEY_FILE)",
                    private_key_file.display()
                )
            })?;
            api::Auth::App {
                app_id: *app_id,
                private_key_pem: pem.into(),
            }
        }
    };
    let api = api::GithubApi::new(&config.github.api_url, auth)
        .context("cannot set up the GitHub client (TOLLGATE_GITHUB_*)")?;
    Ok(Some(api))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
