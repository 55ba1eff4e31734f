//! The `tollgate` command line.

mod audit;
mod policy;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ENV_PREFIX, ServerConfig};

/// Governance gates and approval flows for ML changes on GitHub and GitLab.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// tollgate's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server.
    Serve {
        /// Configuration file (default: config/tollgate.toml, if present). Every key can be
        /// overridden by a TOLLGATE_<KEY> environment variable.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Validate a .governance.toml: exit 0 if valid (with a summary), 1 if not (with
    /// path:line:col errors and hints).
    CheckConfig {
        /// The policy file.
        #[arg(default_value = ".governance.toml")]
        path: PathBuf,
    },
    /// Evaluate a change offline and print the decision.
    Explain {
        /// The policy file (.governance.toml).
        #[arg(long, value_name = "PATH")]
        policy: PathBuf,
        /// The change's facts as JSON (format in README.md).
        #[arg(long, value_name = "FACTS.json")]
        facts: PathBuf,
        /// Print the decision as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a new Ed25519 key pair for signing decision records.
    Keygen {
        /// Folder to write `tollgate-signing.key` and `tollgate-signing.pub` into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the public key that verifies tollgate's decision records (as the server would
    /// load its key: TOLLGATE_SIGNING_KEY_FILE, else the key beside the SQLite database).
    Pubkey {
        /// Configuration file (as for `serve`).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Verify the signed records carried in a saved tollgate comment.
    Verify {
        /// The comment's text, saved to a file.
        #[arg(long, value_name = "FILE")]
        comment: PathBuf,
        /// The public key (PEM); default: the server's, as for `pubkey`.
        #[arg(long, value_name = "KEY")]
        pubkey: Option<PathBuf>,
        /// Configuration file (to find the server's key).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Inspect the audit ledger.
    Audit {
        /// Configuration file (for the database and the key).
        #[arg(long, value_name = "PATH", global = true)]
        config: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Inspect the durable job queue.
    Jobs {
        /// Configuration file (for the database).
        #[arg(long, value_name = "PATH", global = true)]
        config: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: audit::JobsCommand,
    },
    /// Exit 0 when a local `tollgate serve` answers `/healthz` (for container health checks).
    Healthcheck {
        /// Configuration file, to find the listen address (as for `serve`).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Check this URL instead of the configured listen address.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Healthcheck { config, url } => healthcheck(config, url),
        Command::CheckConfig { path } => policy::check_config(&path),
        Command::Keygen { out } => audit::keygen(&out),
        Command::Pubkey { config } => audit::pubkey(config.as_deref()),
        Command::Verify {
            comment,
            pubkey,
            config,
        } => audit::verify_comment(&comment, pubkey.as_deref(), config.as_deref()),
        Command::Audit { config, command } => audit::run(config.as_deref(), command),
        Command::Jobs { config, command } => audit::jobs(config.as_deref(), command),
        Command::Explain {
            policy,
            facts,
            json,
        } => policy::explain(&policy, &facts, json),
    }
}

fn tollgate_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(key, _)| key.starts_with(ENV_PREFIX))
        .collect()
}

/// How long the health check waits for an answer.
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn healthcheck(config_path: Option<PathBuf>, url: Option<String>) -> ExitCode {
    let url = match url {
        Some(url) => url,
        None => match ServerConfig::load_from(config_path.as_deref(), &tollgate_env()) {
            Ok(config) => {
                let mut addr = config.listen;
                // A wildcard listen address is reached through loopback.
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}/healthz")
            }
            Err(error) => {
                eprintln!("tollgate: {error}");
                return ExitCode::from(2);
            }
        },
    };
    let check = async {
        let client = reqwest::Client::builder()
            .timeout(HEALTHCHECK_TIMEOUT)
            .build()?;
        client.get(&url).send().await?.error_for_status()
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(check).map_err(|e| e.to_string()));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tollgate: {url} is not healthy: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> ExitCode {
    let env = tollgate_env();
    let config = match ServerConfig::load_from(config_path.as_deref(), &env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tollgate: {error}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log_format);
    let unknown = ServerConfig::unknown_env_vars(&env);
    if !unknown.is_empty() {
        tracing::warn!(
            ?unknown,
            "ignoring TOLLGATE_* variables that name no configuration key"
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tollgate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("tollgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
