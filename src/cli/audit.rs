//! `tollgate keygen`, `pubkey`, `verify --comment`, `audit verify|export|show` and
//! `jobs list|retry|purge`: the operator's commands on the shared store.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};
use ed25519_dalek::VerifyingKey;

use crate::config::ServerConfig;
use crate::ledger::record::{RecordKind, SignedRecord};
use crate::ledger::store::Ledger;
use crate::ledger::{keys, verify_comment as check_comment};

/// `tollgate audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain of the ledger (signatures and links); report the first broken link.
    Verify {
        /// Public key (PEM) to verify with; default: the server's.
        #[arg(long, value_name = "KEY")]
        pubkey: Option<std::path::PathBuf>,
    },
    /// Export one repository's records.
    Export {
        /// `OWNER/NAME`.
        #[arg(long)]
        repo: String,
        /// Only records from this day on (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<NaiveDate>,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Without an argument: the post-incident reviews that are open or overdue. With
    /// `OWNER/NAME#N`: who approved what, when, on which versions, for that change.
    Show {
        /// `OWNER/NAME#N`.
        change: Option<String>,
        /// List closed reviews too.
        #[arg(long)]
        all: bool,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One signed record (JSON) per line.
    Jsonl,
    /// A table (one row per record).
    Csv,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tollgate: {message}");
    ExitCode::FAILURE
}

fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn config(path: Option<&Path>) -> Result<ServerConfig, String> {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with(crate::config::ENV_PREFIX))
        .collect();
    ServerConfig::load_from(path, &env).map_err(|e| e.to_string())
}

/// The server's public key, as the server would load its private key.
fn server_key(config_path: Option<&Path>) -> Result<VerifyingKey, String> {
    let config = config(config_path)?;
    if let Some(path) = &config.signing_key_file {
        return keys::read_private(path)
            .map(|k| k.verifying_key())
            .map_err(|e| e.to_string());
    }
    let dir = config
        .sqlite_dir()
        .ok_or("set TOLLGATE_SIGNING_KEY_FILE (or pass --pubkey)")?;
    let path = dir.join(keys::PRIVATE_KEY_FILE);
    keys::read_private(&path)
        .map(|k| k.verifying_key())
        .map_err(|e| e.to_string())
}

fn verifying_key(
    pubkey: Option<&Path>,
    config_path: Option<&Path>,
) -> Result<VerifyingKey, String> {
    match pubkey {
        Some(path) => keys::read_public(path).map_err(|e| e.to_string()),
        None => server_key(config_path),
    }
}

/// `tollgate keygen --out DIR`.
pub fn keygen(out: &Path) -> ExitCode {
    match keys::write_pair(out, &keys::generate()) {
        Ok((private, public)) => {
            println!(
                "wrote {} (keep it secret) and {}",
                private.display(),
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

/// `tollgate pubkey`.
pub fn pubkey(config_path: Option<&Path>) -> ExitCode {
    match server_key(config_path) {
        Ok(key) => {
            print!("{}", keys::public_pem(&key));
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

/// `tollgate verify --comment FILE [--pubkey KEY]`.
pub fn verify_comment(
    comment: &Path,
    pubkey: Option<&Path>,
    config_path: Option<&Path>,
) -> ExitCode {
    let key = match verifying_key(pubkey, config_path) {
        Ok(key) => key,
        Err(error) => return fail(error),
    };
    let text = match std::fs::read_to_string(comment) {
        Ok(text) => text,
        Err(error) => return fail(format!("{}: {error}", comment.display())),
    };
    let checks = match check_comment(&text, &key) {
        Ok(checks) => checks,
        Err(error) => return fail(format!("{}: {error}", comment.display())),
    };
    if checks.is_empty() {
        return fail(format!(
            "{}: carries no tollgate records",
            comment.display()
        ));
    }
    let mut all_valid = true;
    for check in &checks {
        match &check.result {
            Ok(()) => println!("valid    {}", check.id),
            Err(why) => {
                all_valid = false;
                println!("INVALID  {}: {why}", check.id);
            }
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The configured store, opened on a runtime for the command to run on.
fn open_store(config_path: Option<&Path>) -> Result<(tokio::runtime::Runtime, Ledger), ExitCode> {
    let config = config(config_path).map_err(fail)?;
    let runtime = runtime().map_err(fail)?;
    let ledger = runtime
        .block_on(Ledger::open(&config.database_url))
        .map_err(fail)?;
    Ok((runtime, ledger))
}

/// `tollgate audit …`.
pub fn run(config_path: Option<&Path>, command: AuditCommand) -> ExitCode {
    let (runtime, ledger) = match open_store(config_path) {
        Ok(store) => store,
        Err(code) => return code,
    };
    runtime.block_on(async {
        match command {
            AuditCommand::Verify { pubkey } => {
                audit_verify(&ledger, pubkey.as_deref(), config_path).await
            }
            AuditCommand::Export {
                repo,
                since,
                format,
            } => export(&ledger, &repo, since, format).await,
            AuditCommand::Show {
                change: Some(change),
                ..
            } => show(&ledger, &change).await,
            AuditCommand::Show { change: None, all } => show_reviews(&ledger, all).await,
        }
    })
}

async fn audit_verify(
    ledger: &Ledger,
    pubkey: Option<&Path>,
    config_path: Option<&Path>,
) -> ExitCode {
    let key = match verifying_key(pubkey, config_path) {
        Ok(key) => key,
        Err(error) => return fail(error),
    };
    let report = match ledger.verify(&key).await {
        Ok(report) => report,
        Err(error) => return fail(error),
    };
    if report.broken.is_empty() {
        println!(
            "ledger intact: {} records in {} chains verify",
            report.records, report.repos
        );
        return ExitCode::SUCCESS;
    }
    for broken in &report.broken {
        println!(
            "BROKEN {} at record {}: {}",
            broken.repo, broken.record_id, broken.problem
        );
    }
    ExitCode::FAILURE
}

async fn export(
    ledger: &Ledger,
    repo: &str,
    since: Option<NaiveDate>,
    format: ExportFormat,
) -> ExitCode {
    let rows = match ledger.records(Some(repo)).await {
        Ok(rows) => rows,
        Err(error) => return fail(error),
    };
    let from_ms = since
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(i64::MIN, |t| t.and_utc().timestamp_millis());
    let records: Vec<SignedRecord> = rows
        .iter()
        .filter_map(|r| r.signed())
        .filter(|r| r.record.time_ms >= from_ms)
        .collect();
    match format {
        ExportFormat::Jsonl => {
            for record in &records {
                println!("{}", serde_json::to_string(record).unwrap_or_default());
            }
        }
        ExportFormat::Csv => {
            println!(
                "id,time,repo,number,kind,actor,role,outcome,tier,head_sha,base_sha,detail,signature"
            );
            for r in &records {
                let rec = &r.record;
                let fields = [
                    rec.id.clone(),
                    time(rec.time_ms),
                    rec.repo.clone(),
                    rec.number.to_string(),
                    kind(rec.kind),
                    rec.actor.clone().unwrap_or_default(),
                    rec.role.clone().unwrap_or_default(),
                    rec.outcome.clone(),
                    rec.tier.clone().unwrap_or_default(),
                    rec.head_sha.clone(),
                    rec.base_sha.clone(),
                    rec.detail.clone(),
                    r.signature.clone(),
                ];
                println!(
                    "{}",
                    fields
                        .iter()
                        .map(|f| csv_field(f))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// RFC 4180 quoting.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(String::new(), |t| t.to_rfc3339())
}

fn kind(kind: RecordKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The records of what follows a bypass.
const INCIDENT_KINDS: &[RecordKind] = &[
    RecordKind::MergedUnderBypass,
    RecordKind::ReviewOpened,
    RecordKind::ReviewOverdue,
    RecordKind::ReviewClosed,
    RecordKind::RollbackRequested,
    RecordKind::RollbackRefused,
    RecordKind::RollbackOpened,
];

/// The post-incident reviews: open and overdue ones (with `all`, closed ones too), soonest
/// due first, as a table an auditor can read.
async fn show_reviews(ledger: &Ledger, all: bool) -> ExitCode {
    let incidents = crate::incident::store::Incidents::new(ledger.pool().clone());
    let reviews = match incidents.reviews(all).await {
        Ok(reviews) => reviews,
        Err(error) => return fail(error),
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    if reviews.is_empty() {
        println!(
            "no {}post-incident reviews",
            if all { "" } else { "open or overdue " }
        );
        return ExitCode::SUCCESS;
    }
    println!("STATE\tDUE\tREVIEW\tCHANGE\tTICKET\tBYPASSED BY\tCLOSED");
    for review in &reviews {
        let state = if review.overdue_at(now_ms) {
            "OVERDUE"
        } else {
            review.state.name()
        };
        let issue = review
            .issue
            .map_or_else(|| "(opening)".to_owned(), |n| format!("#{n}"));
        let closed = match (&review.closed_by, review.closed_ms) {
            (Some(by), Some(at)) => format!("{} by {by}", time(at)),
            _ => "-".to_owned(),
        };
        println!(
            "{state}\t{}\t{} {issue}\t{}#{}\t{}\t{}\t{closed}",
            time(review.due_ms),
            review.forge,
            review.repo,
            review.change,
            review.ticket,
            review.bypassed_by
        );
    }
    ExitCode::SUCCESS
}

/// The playbook's self-check for one change: approvals with names and times, artifacts and
/// risk rating, code and data versions, bypasses.
async fn show(ledger: &Ledger, change: &str) -> ExitCode {
    let Some((repo, number)) = change
        .rsplit_once('#')
        .and_then(|(r, n)| Some((r, n.parse::<u64>().ok()?)))
    else {
        return fail(format!("`{change}` is not OWNER/NAME#NUMBER"));
    };
    let rows = match ledger.change_records(repo, number).await {
        Ok(rows) => rows,
        Err(error) => return fail(error),
    };
    let records: Vec<SignedRecord> = rows.iter().filter_map(|r| r.signed()).collect();
    if records.is_empty() {
        return fail(format!("no records for {change}"));
    }
    // The header states the policy's last decision; incident steps come in their own section.
    let last = &records
        .iter()
        .rev()
        .find(|r| !INCIDENT_KINDS.contains(&r.record.kind))
        .unwrap_or(&records[records.len() - 1])
        .record;
    println!(
        "{change}: {} (tier {})",
        last.outcome,
        last.tier.as_deref().unwrap_or("none")
    );
    println!(
        "code: head {} on base {}; policy {}",
        last.head_sha,
        last.base_sha,
        last.policy_sha.as_deref().unwrap_or("-")
    );
    for reason in &last.reasons {
        println!("  risk: {reason}");
    }
    let section = |title: &str, kinds: &[RecordKind]| {
        let lines: Vec<&SignedRecord> = records
            .iter()
            .filter(|r| kinds.contains(&r.record.kind))
            .collect();
        if !lines.is_empty() {
            println!("{title}:");
            for r in lines {
                let rec = &r.record;
                let who = match (&rec.actor, &rec.role) {
                    (Some(actor), Some(role)) => format!("{actor} as {role}, "),
                    (Some(actor), None) => format!("{actor}, "),
                    _ => String::new(),
                };
                println!(
                    "  {} {who}{} [commit {}]",
                    time(rec.time_ms),
                    rec.detail,
                    rec.head_sha
                );
            }
        }
    };
    section("sign-offs", &[RecordKind::SignOffCounted]);
    section(
        "approvals that did not count",
        &[RecordKind::ApprovalIgnored],
    );
    section("vetoes", &[RecordKind::Veto]);
    section(
        "artifacts",
        &[RecordKind::EvidenceFound, RecordKind::EvidenceMissing],
    );
    section(
        "bypasses",
        &[RecordKind::BypassHonoured, RecordKind::BypassRefused],
    );
    section(
        "outcomes",
        &[RecordKind::OutcomeChanged, RecordKind::PolicyInvalid],
    );
    section("incident", INCIDENT_KINDS);
    ExitCode::SUCCESS
}

/// `tollgate jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs not yet done (with `--all`, the done ones too), newest first.
    List {
        /// Include finished jobs.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Make waiting jobs (all, or the one given) run now instead of after their backoff.
    Retry {
        /// One job's id.
        id: Option<i64>,
    },
    /// Remove finished jobs older than the given age.
    Purge {
        /// Age in hours.
        #[arg(long, default_value_t = 24)]
        older_than_hours: i64,
    },
}

/// `tollgate jobs …`.
pub fn jobs(config_path: Option<&Path>, command: JobsCommand) -> ExitCode {
    let (runtime, ledger) = match open_store(config_path) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let queue = crate::queue::JobQueue::new(ledger.pool().clone());
    runtime.block_on(async {
        let now = Utc::now().timestamp_millis();
        let result = match command {
            JobsCommand::List { all, limit } => queue.list(all, limit).await.map(|rows| {
                println!("id\tstate\tattempts\tchange\tdelivery\tavailable\tlast error");
                for row in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        row.id,
                        row.state,
                        row.attempts,
                        row.change_key,
                        row.delivery_id,
                        time(row.available_ms),
                        row.last_error.unwrap_or_default()
                    );
                }
            }),
            JobsCommand::Retry { id } => queue
                .retry_now(id, now)
                .await
                .map(|n| println!("{n} job(s) made available now")),
            JobsCommand::Purge { older_than_hours } => queue
                .purge_done(now - older_than_hours * 3_600_000)
                .await
                .map(|n| println!("{n} finished job(s) removed")),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(error),
        }
    })
}
