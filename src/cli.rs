//! The `tollgate` command line.

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
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve(config),
    }
}

fn serve(config_path: Option<PathBuf>) -> ExitCode {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(key, _)| key.starts_with(ENV_PREFIX))
        .collect();
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
