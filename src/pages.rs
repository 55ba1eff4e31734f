//! The decision pages: `GET /pr/{forge}/{repo…}/{number}` shows everything tollgate decided
//! about a change and why, with every ledger record's signature checked on the server; `GET /`
//! lists recent decisions. Server-rendered HTML (no JavaScript), readable on a phone. A page
//! exists only for changes tollgate decided (repositories it is installed on); nothing on it is
//! secret: it shows what the sticky comment shows.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::DateTime;
use ed25519_dalek::VerifyingKey;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use sqlx::{AnyPool, Row};

use crate::ledger::record::RecordKind;
use crate::ledger::store::Ledger;

const PAGE_TEMPLATE: &str = "page.html.j2";
const INDEX_TEMPLATE: &str = "index.html.j2";
/// Decisions listed on the start page.
const RECENT: i64 = 50;

/// A change's latest decision, as its page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PageEntry {
    /// `github` or `gitlab`.
    pub forge: String,
    /// The repository.
    pub repo: String,
    /// The change's number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its page on the forge.
    pub url: String,
    /// The head decided on.
    pub head_sha: String,
    /// The outcome's name.
    pub outcome: String,
    /// When (epoch ms).
    pub decided_ms: i64,
    /// What the sticky comment shows (see [`crate::render::page_view`]).
    pub view: serde_json::Value,
}

/// Where a change's page is, under the server's public address.
pub fn page_path(forge: &str, repo: &str, number: u64) -> String {
    format!("/pr/{forge}/{repo}/{number}")
}

/// Keeps a change's page (when there is a store) and returns its public address (when the
/// server's public address is configured). A page that cannot be kept is logged, not fatal:
/// the check and the comment carry the decision either way.
pub async fn save(
    pages: Option<&Pages>,
    entry: &PageEntry,
    public_url: Option<&url::Url>,
) -> Option<String> {
    let pages = pages?;
    if let Err(error) = pages.save(entry).await {
        tracing::warn!(%error, "cannot keep the decision page");
        return None;
    }
    let public = public_url?;
    let path = page_path(&entry.forge, &entry.repo, entry.number);
    Some(format!("{}{path}", public.as_str().trim_end_matches('/')))
}

/// The pages in the shared store.
#[derive(Clone)]
pub struct Pages {
    pool: AnyPool,
}

impl Pages {
    /// The pages in the store behind `pool`.
    pub fn new(pool: AnyPool) -> Pages {
        Pages { pool }
    }

    /// Keeps a change's latest decision.
    pub async fn save(&self, entry: &PageEntry) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO decision_pages (forge, repo, number, title, url, head_sha, outcome, decided_ms, view) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (forge, repo, number) DO UPDATE SET title = excluded.title, url = excluded.url, \
             head_sha = excluded.head_sha, outcome = excluded.outcome, decided_ms = excluded.decided_ms, view = excluded.view",
        )
        .bind(&entry.forge)
        .bind(&entry.repo)
        .bind(entry.number as i64)
        .bind(&entry.title)
        .bind(&entry.url)
        .bind(&entry.head_sha)
        .bind(&entry.outcome)
        .bind(entry.decided_ms)
        .bind(entry.view.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A change's page entry.
    pub async fn get(
        &self,
        forge: &str,
        repo: &str,
        number: u64,
    ) -> Result<Option<PageEntry>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT forge, repo, number, title, url, head_sha, outcome, decided_ms, view FROM decision_pages \
             WHERE forge = $1 AND repo = $2 AND number = $3",
        )
        .bind(forge)
        .bind(repo)
        .bind(number as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_of).transpose()
    }

    /// The latest decisions, newest first.
    pub async fn recent(&self, limit: i64) -> Result<Vec<PageEntry>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT forge, repo, number, title, url, head_sha, outcome, decided_ms, view FROM decision_pages \
             ORDER BY decided_ms DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_of).collect()
    }
}

fn entry_of(row: &sqlx::any::AnyRow) -> Result<PageEntry, sqlx::Error> {
    let view: String = row.try_get("view")?;
    Ok(PageEntry {
        forge: row.try_get("forge")?,
        repo: row.try_get("repo")?,
        number: row.try_get::<i64, _>("number")? as u64,
        title: row.try_get("title")?,
        url: row.try_get("url")?,
        head_sha: row.try_get("head_sha")?,
        outcome: row.try_get("outcome")?,
        decided_ms: row.try_get("decided_ms")?,
        view: serde_json::from_str(&view).unwrap_or(serde_json::Value::Null),
    })
}

/// How a forge writes a change's number after its repository (`#7`, `!7`).
fn separator(forge: &str) -> &'static str {
    if forge == "gitlab" { "!" } else { "#" }
}

fn when(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or(String::new(), |t| {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    })
}

#[derive(Serialize)]
struct ChangeView<'a> {
    forge: &'a str,
    repo: &'a str,
    sep: &'static str,
    number: u64,
    title: &'a str,
    url: &'a str,
    head: &'a str,
    outcome: &'a str,
    decided: String,
}

#[derive(Serialize)]
struct RecordRow {
    verified: bool,
    problem: String,
    when: String,
    kind: String,
    actor: Option<String>,
    detail: String,
    head: String,
}

#[derive(Serialize)]
struct DeploymentRow {
    approved: bool,
    state: String,
    when: String,
    detail: String,
}

#[derive(Serialize)]
struct IndexRow {
    decided: String,
    page: String,
    repo: String,
    sep: &'static str,
    number: u64,
    title: String,
    headline: String,
}

/// The HTML templates, escaping everything they interpolate; compiled once per process, not
/// per page request.
fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENVIRONMENT.get_or_init(build_environment)
}

fn build_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_filter("code", code_spans);
    let templates = [
        (PAGE_TEMPLATE, include_str!("../templates/page.html.j2")),
        (INDEX_TEMPLATE, include_str!("../templates/index.html.j2")),
    ];
    for (name, source) in templates {
        env.add_template(name, source)
            .unwrap_or_else(|e| unreachable!("the built-in page templates are valid: {e}"));
    }
    env
}

/// Text with Markdown code spans (`like this`), as HTML: everything escaped, the spans in
/// `<code>` (the decision's texts mark paths and names that way for the comment). An unmatched
/// backtick's span ends with the text.
fn code_spans(text: String) -> minijinja::Value {
    let mut html = String::with_capacity(text.len() + 16);
    for (i, part) in text.split('`').enumerate() {
        let escaped = minijinja::HtmlEscape(part).to_string();
        if i % 2 == 1 {
            html.push_str("<code>");
            html.push_str(&escaped);
            html.push_str("</code>");
        } else {
            html.push_str(&escaped);
        }
    }
    minijinja::Value::from_safe_string(html)
}

/// A change's page: its latest decision and its ledger records, each signature checked with
/// `key`.
pub fn render_page(
    entry: &PageEntry,
    records: &[crate::ledger::store::StoredRecord],
    key: &VerifyingKey,
) -> Result<String, minijinja::Error> {
    let mut rows = Vec::new();
    let mut deployments = Vec::new();
    for stored in records {
        let Some(signed) = stored.signed() else {
            continue;
        };
        let check = signed.verify(key);
        let record = &signed.record;
        let kind = serde_json::to_value(record.kind)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default();
        if matches!(
            record.kind,
            RecordKind::DeploymentApproved | RecordKind::DeploymentRejected
        ) {
            deployments.push(DeploymentRow {
                approved: record.kind == RecordKind::DeploymentApproved,
                state: record.outcome.clone(),
                when: when(record.time_ms),
                detail: record.detail.clone(),
            });
        }
        rows.push(RecordRow {
            verified: check.is_ok(),
            problem: check.err().map(|e| e.to_string()).unwrap_or_default(),
            when: when(record.time_ms),
            kind,
            actor: record.actor.clone(),
            detail: record.detail.clone(),
            head: crate::event::short_sha(&record.head_sha).to_owned(),
        });
    }
    let change = ChangeView {
        forge: &entry.forge,
        repo: &entry.repo,
        sep: separator(&entry.forge),
        number: entry.number,
        title: &entry.title,
        url: &entry.url,
        head: crate::event::short_sha(&entry.head_sha),
        outcome: &entry.outcome,
        decided: when(entry.decided_ms),
    };
    #[derive(Serialize)]
    struct Context<'a> {
        change: ChangeView<'a>,
        view: &'a serde_json::Value,
        records: Vec<RecordRow>,
        deployments: Vec<DeploymentRow>,
    }
    let context = Context {
        change,
        view: &entry.view,
        records: rows,
        deployments,
    };
    environment()
        .get_template(PAGE_TEMPLATE)?
        .render(minijinja::value::Serde(context))
}

/// The start page: recent decisions with links to their pages.
pub fn render_index(entries: &[PageEntry]) -> Result<String, minijinja::Error> {
    let rows: Vec<IndexRow> = entries
        .iter()
        .map(|e| IndexRow {
            decided: when(e.decided_ms),
            page: page_path(&e.forge, &e.repo, e.number),
            repo: e.repo.clone(),
            sep: separator(&e.forge),
            number: e.number,
            title: e.title.clone(),
            headline: e.view["headline"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    environment()
        .get_template(INDEX_TEMPLATE)?
        .render(minijinja::value::Serde(serde_json::json!({ "rows": rows })))
}

/// What the page handlers read.
#[derive(Clone)]
pub struct PagesState {
    /// The pages.
    pub pages: Pages,
    /// The ledger (records to show).
    pub ledger: Ledger,
    /// The key records are checked with.
    pub key: VerifyingKey,
}

/// The page routes.
pub fn router(state: PagesState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/pr/{forge}/{*rest}", get(change_page))
        .with_state(state)
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing on a page runs scripts or is framed elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

fn failure(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_owned(),
    )
        .into_response()
}

async fn index(State(state): State<PagesState>) -> Response {
    match state.pages.recent(RECENT).await {
        Ok(entries) => match render_index(&entries) {
            Ok(body) => html(body),
            Err(error) => {
                tracing::error!(%error, "cannot render the start page");
                failure(StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page")
            }
        },
        Err(error) => {
            tracing::error!(%error, "cannot read recent decisions");
            failure(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read")
        }
    }
}

async fn change_page(
    State(state): State<PagesState>,
    Path((forge, rest)): Path<(String, String)>,
) -> Response {
    let Some((repo, number)) = rest
        .rsplit_once('/')
        .and_then(|(repo, n)| Some((repo, n.parse::<u64>().ok()?)))
    else {
        return failure(
            StatusCode::NOT_FOUND,
            "no such page: /pr/{forge}/{owner}/{repo}/{number}",
        );
    };
    let entry = match state.pages.get(&forge, repo, number).await {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return failure(
                StatusCode::NOT_FOUND,
                "tollgate has decided nothing about this change",
            );
        }
        Err(error) => {
            tracing::error!(%error, "cannot read a decision page");
            return failure(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read");
        }
    };
    let records = match state.ledger.change_records(repo, number).await {
        Ok(records) => records
            .into_iter()
            .filter(|r| r.signed().is_some_and(|s| s.record.forge == forge))
            .collect::<Vec<_>>(),
        Err(error) => {
            tracing::error!(%error, "cannot read a change's records");
            return failure(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read");
        }
    };
    match render_page(&entry, &records, &state.key) {
        Ok(body) => html(body),
        Err(error) => {
            tracing::error!(%error, "cannot render a decision page");
            failure(StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::code_spans;

    #[test]
    fn code_spans_are_code_and_everything_else_is_escaped() {
        assert_eq!(
            code_spans("`models/<x>.onnx` is a model & more".to_owned()).to_string(),
            "<code>models&#x2f;&lt;x&gt;.onnx</code> is a model &amp; more"
        );
        assert_eq!(
            code_spans("odd ` <b>".to_owned()).to_string(),
            "odd <code> &lt;b&gt;</code>"
        );
    }
}
