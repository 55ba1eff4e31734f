//! Server configuration: `config/tollgate.toml` (or `--config PATH`), every key overridable by
//! a `TOLLGATE_<KEY>` environment variable, secrets also readable from `TOLLGATE_<KEY>_FILE`.
//!
//! Layering is done here rather than with figment because figment parses environment values
//! as TOML-like literals (`"true"` becomes a bool, `[x]` an array, quotes are stripped), which
//! silently corrupts secrets; here every variable is taken verbatim and parsed by its key's type.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// Prefix of every environment variable tollgate reads.
pub const ENV_PREFIX: &str = "TOLLGATE_";

/// The configuration file read when `--config` is not given (absent is fine).
pub const DEFAULT_CONFIG_PATH: &str = "config/tollgate.toml";

/// A configuration problem, naming the key (as the user wrote it) and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}: {message}")]
pub struct ConfigError {
    /// `listen` in a file, or `TOLLGATE_LISTEN`, or the file itself.
    pub key: String,
    /// What is wrong and how to fix it. Never contains a secret value.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format; use `text` or `json`"
            )),
        }
    }
}

/// One string or several, so `secret = "x"` and `secret = ["new", "old"]` both work.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

/// The file as written. Every field is optional; defaults are applied after the environment.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    github_api_url: Option<String>,
    github_webhook_secret: Option<OneOrMany>,
    github_webhook_secret_file: Option<PathBuf>,
    github_token: Option<String>,
    github_token_file: Option<PathBuf>,
    github_app_id: Option<u64>,
    github_private_key_file: Option<PathBuf>,
    gitlab_url: Option<String>,
    gitlab_token: Option<String>,
    gitlab_token_file: Option<PathBuf>,
    gitlab_webhook_token: Option<OneOrMany>,
    gitlab_webhook_token_file: Option<PathBuf>,
    signing_key_file: Option<PathBuf>,
    default_policy_file: Option<PathBuf>,
    check_name: Option<String>,
    drain_timeout_secs: Option<u64>,
    workers: Option<u64>,
    job_lease_secs: Option<u64>,
    job_give_up_secs: Option<u64>,
    scheduler_poll_secs: Option<u64>,
    public_url: Option<String>,
    log_format: Option<String>,
}

/// Every key tollgate knows, in file spelling. `TOLLGATE_` + upper case is the variable.
pub const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "github_api_url",
    "github_webhook_secret",
    "github_webhook_secret_file",
    "github_token",
    "github_token_file",
    "github_app_id",
    "github_private_key_file",
    "gitlab_url",
    "gitlab_token",
    "gitlab_token_file",
    "gitlab_webhook_token",
    "gitlab_webhook_token_file",
    "signing_key_file",
    "default_policy_file",
    "check_name",
    "drain_timeout_secs",
    "workers",
    "job_lease_secs",
    "job_give_up_secs",
    "scheduler_poll_secs",
    "public_url",
    "log_format",
];

/// How tollgate authenticates to GitHub.
#[derive(Clone)]
pub enum GithubCredentials {
    /// No credentials: dry-run, log what would be published.
    None,
    /// A personal or fine-grained token (`TOLLGATE_GITHUB_TOKEN`).
    Token(SecretString),
    /// A GitHub App: id and the path of its private key.
    App {
        /// `TOLLGATE_GITHUB_APP_ID`.
        app_id: u64,
        /// `TOLLGATE_GITHUB_PRIVATE_KEY_FILE`.
        private_key_file: PathBuf,
    },
}

impl fmt::Debug for GithubCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GithubCredentials::None => f.write_str("None"),
            GithubCredentials::Token(_) => f.write_str("Token([redacted])"),
            GithubCredentials::App {
                app_id,
                private_key_file,
            } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("private_key_file", private_key_file)
                .finish(),
        }
    }
}

/// GitHub settings.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// REST API root (`https://api.github.com`, or GitHub Enterprise's `/api/v3`).
    pub api_url: url::Url,
    /// Webhook secrets accepted (several while rotating). Empty: GitHub intake is off.
    pub webhook_secrets: Vec<SecretString>,
    /// How to call the API.
    pub credentials: GithubCredentials,
}

/// GitLab settings.
#[derive(Debug, Clone)]
pub struct GitlabConfig {
    /// Instance root; the API is under `/api/v4`.
    pub url: Option<url::Url>,
    /// API token of tollgate's bot user.
    pub token: Option<SecretString>,
    /// Webhook tokens accepted (several while rotating). Empty: GitLab intake is off.
    pub webhook_tokens: Vec<SecretString>,
}

/// The validated server configuration. `Debug` never shows a secret.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Store URL (`sqlite://…` or `postgres://…`).
    pub database_url: String,
    /// GitHub settings.
    pub github: GithubConfig,
    /// GitLab settings.
    pub gitlab: GitlabConfig,
    /// Ed25519 private key used to sign decision records.
    pub signing_key_file: Option<PathBuf>,
    /// Where people reach this server (`https://tollgate.example.com`): the check's details
    /// link and the commit status's target go to the change's decision page there.
    pub public_url: Option<url::Url>,
    /// An org-wide `.governance.toml` for repositories that have none (validated at start).
    pub default_policy: Option<std::sync::Arc<crate::policy::Policy>>,
    /// Name of the check run / commit status tollgate publishes.
    pub check_name: String,
    /// How long SIGTERM waits for in-flight work.
    pub drain_timeout: Duration,
    /// How the durable queue is worked.
    pub jobs: JobSettings,
    /// Log line format.
    pub log_format: LogFormat,
}

/// How this process works the durable job queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSettings {
    /// Changes evaluated at once by this process (0: intake only; other replicas evaluate).
    pub workers: usize,
    /// How long a claimed change stays with this process without a renewal (renewed while the
    /// evaluation runs): a crashed process's work is taken over after this long.
    pub lease: Duration,
    /// How long a change may keep failing before its jobs are parked as `failed` for
    /// `tollgate jobs retry`.
    pub give_up_after: Duration,
    /// How often the scheduler looks for deadlines that fell due (review reminders, bypass
    /// expiry).
    pub scheduler_poll: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            workers: 4,
            lease: Duration::from_secs(30),
            give_up_after: Duration::from_secs(6 * 3600),
            scheduler_poll: Duration::from_secs(15),
        }
    }
}

/// What tollgate can do with the credentials it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No forge credentials: log what would be published.
    DryRun,
    /// Credentials for at least one forge.
    Live,
}

impl Mode {
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Live => "live",
        }
    }
}

impl ServerConfig {
    /// Whether any forge credentials are configured.
    pub fn mode(&self) -> Mode {
        let github = !matches!(self.github.credentials, GithubCredentials::None);
        if github || self.gitlab.token.is_some() {
            Mode::Live
        } else {
            Mode::DryRun
        }
    }

    /// The folder of the SQLite database (where the signing key is kept when no key file is
    /// configured); `None` for PostgreSQL.
    pub fn sqlite_dir(&self) -> Option<PathBuf> {
        let path = self.database_url.strip_prefix("sqlite://")?;
        let path = path.split('?').next().unwrap_or(path);
        Some(
            Path::new(path)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        )
    }

    /// Loads from the process environment and the given (or default) file.
    pub fn load(explicit_path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(key, _)| key.starts_with(ENV_PREFIX))
            .collect();
        Self::load_from(explicit_path, &env)
    }

    /// Loads from a file and an explicit environment map (testable without touching the
    /// process environment).
    pub fn load_from(
        explicit_path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let (path, file) = read_file(explicit_path)?;
        Layered { path, env }.resolve(file)
    }

    /// `TOLLGATE_*` variables in `env` that name no key (likely typos). Names only.
    pub fn unknown_env_vars(env: &BTreeMap<String, String>) -> Vec<String> {
        env.keys()
            .filter(|name| {
                name.strip_prefix(ENV_PREFIX)
                    .is_some_and(|rest| !KEYS.iter().any(|key| key.eq_ignore_ascii_case(rest)))
            })
            .cloned()
            .collect()
    }
}

fn read_file(explicit_path: Option<&Path>) -> Result<(Option<PathBuf>, FileConfig), ConfigError> {
    let path = explicit_path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if explicit_path.is_none() && error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((None, FileConfig::default()));
        }
        Err(error) => {
            return Err(ConfigError::new(
                path.display().to_string(),
                format!("cannot read the configuration file: {error}"),
            ));
        }
    };
    // toml's message names line and column and shows the offending line.
    let parsed = toml::from_str(&text).map_err(|error| {
        ConfigError::new(
            path.display().to_string(),
            format!(
                "{}\nhint: the keys are: {}",
                error.to_string().trim_end(),
                KEYS.join(", ")
            ),
        )
    })?;
    Ok((Some(path.to_path_buf()), parsed))
}

/// The file and the environment, resolved key by key (environment wins).
struct Layered<'a> {
    /// The file read, if any (for error messages).
    path: Option<PathBuf>,
    env: &'a BTreeMap<String, String>,
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

impl Layered<'_> {
    /// Where a key's value is described in errors: the variable if set, else the file key.
    fn origin(&self, key: &str) -> String {
        let var = env_name(key);
        if self.env.contains_key(&var) {
            return var;
        }
        match &self.path {
            Some(path) => format!("`{key}` in {}", path.display()),
            None => var,
        }
    }

    fn env(&self, key: &str) -> Option<&str> {
        self.env.get(&env_name(key)).map(String::as_str)
    }

    /// A plain (non-secret) value: environment, else file, parsed by type.
    fn plain<T: FromStr>(
        &self,
        key: &str,
        from_file: Option<String>,
    ) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let Some(raw) = self.env(key).map(str::to_owned).or(from_file) else {
            return Ok(None);
        };
        raw.trim().parse().map(Some).map_err(|error| {
            ConfigError::new(
                self.origin(key),
                format!("`{raw}` is not valid: {error}{}", hint(key)),
            )
        })
    }

    /// A secret: the variable, else `<KEY>_FILE` (variable or file key), else the file value.
    /// Setting both the value and its `_FILE` is ambiguous and refused.
    fn secrets(
        &self,
        key: &str,
        from_file: Option<Vec<String>>,
        file_path: Option<PathBuf>,
    ) -> Result<Vec<SecretString>, ConfigError> {
        let file_key = format!("{key}_file");
        let path = self.env(&file_key).map(PathBuf::from).or(file_path);
        let direct = self.env(key).map(|v| vec![v.to_owned()]).or(from_file);
        let values = match (direct, path) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    self.origin(key),
                    format!(
                        "both `{key}` and `{file_key}` are set; keep one ({} is preferred)",
                        env_name(&file_key)
                    ),
                ));
            }
            (Some(values), None) => values,
            (None, Some(path)) => read_secret_file(&self.origin(&file_key), &path)?,
            (None, None) => Vec::new(),
        };
        if values.iter().any(|v| v.is_empty()) {
            return Err(ConfigError::new(self.origin(key), "a secret is empty"));
        }
        Ok(values.into_iter().map(SecretString::from).collect())
    }

    fn resolve(&self, f: FileConfig) -> Result<ServerConfig, ConfigError> {
        let listen = self
            .plain("listen", f.listen)?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let database_url = self
            .plain::<String>("database_url", f.database_url)?
            .unwrap_or_else(|| "sqlite://tollgate.db".to_owned());
        let github_api_url = self
            .plain::<url::Url>("github_api_url", f.github_api_url)?
            .map_or_else(|| url::Url::parse("https://api.github.com"), Ok)
            .map_err(|e| ConfigError::new("github_api_url", e.to_string()))?;
        self.require_http("github_api_url", &github_api_url)?;
        let webhook_secrets = self.secrets(
            "github_webhook_secret",
            f.github_webhook_secret.map(OneOrMany::into_vec),
            f.github_webhook_secret_file,
        )?;
        let credentials = self.github_credentials(
            f.github_token.map(|t| vec![t]),
            f.github_token_file,
            f.github_app_id,
            f.github_private_key_file,
        )?;
        let gitlab = self.gitlab(FileGitlab {
            url: f.gitlab_url,
            token: f.gitlab_token,
            token_file: f.gitlab_token_file,
            webhook_token: f.gitlab_webhook_token,
            webhook_token_file: f.gitlab_webhook_token_file,
        })?;
        let signing_key_file =
            self.plain::<PathBuf>("signing_key_file", f.signing_key_file.map(path_text))?;
        let default_policy = match self
            .plain::<PathBuf>("default_policy_file", f.default_policy_file.map(path_text))?
        {
            Some(path) => Some(self.default_policy(&path)?),
            None => None,
        };
        let check_name = self
            .plain::<String>("check_name", f.check_name)?
            .unwrap_or_else(|| "tollgate".to_owned());
        if check_name.trim().is_empty() || check_name.chars().any(char::is_control) {
            return Err(ConfigError::new(
                self.origin("check_name"),
                "the check name must be non-empty printable text, e.g. `tollgate`",
            ));
        }
        let drain_timeout = Duration::from_secs(
            self.plain(
                "drain_timeout_secs",
                f.drain_timeout_secs.map(|v| v.to_string()),
            )?
            .unwrap_or(30),
        );
        let defaults = JobSettings::default();
        let workers = self
            .plain::<usize>("workers", f.workers.map(|v| v.to_string()))?
            .unwrap_or(defaults.workers);
        let lease = self
            .plain::<u64>("job_lease_secs", f.job_lease_secs.map(|v| v.to_string()))?
            .map_or(defaults.lease, Duration::from_secs);
        if lease.is_zero() {
            return Err(ConfigError::new(
                self.origin("job_lease_secs"),
                "a lease of 0 seconds would hand every change to every replica; use at least 1 (default 30)",
            ));
        }
        let give_up_after = self
            .plain::<u64>(
                "job_give_up_secs",
                f.job_give_up_secs.map(|v| v.to_string()),
            )?
            .map_or(defaults.give_up_after, Duration::from_secs);
        let scheduler_poll = self
            .plain::<u64>(
                "scheduler_poll_secs",
                f.scheduler_poll_secs.map(|v| v.to_string()),
            )?
            .map_or(defaults.scheduler_poll, Duration::from_secs);
        if scheduler_poll.is_zero() {
            return Err(ConfigError::new(
                self.origin("scheduler_poll_secs"),
                "the scheduler cannot poll every 0 seconds; use at least 1 (default 15)",
            ));
        }
        let jobs = JobSettings {
            workers,
            lease,
            give_up_after,
            scheduler_poll,
        };
        let public_url = self.plain::<url::Url>("public_url", f.public_url)?;
        if let Some(url) = &public_url {
            self.require_http("public_url", url)?;
        }
        let log_format = self.plain("log_format", f.log_format)?.unwrap_or_default();
        Ok(ServerConfig {
            public_url,
            listen,
            database_url,
            github: GithubConfig {
                api_url: github_api_url,
                webhook_secrets,
                credentials,
            },
            gitlab,
            signing_key_file,
            default_policy,
            check_name,
            drain_timeout,
            jobs,
            log_format,
        })
    }

    /// Reads and validates the org-wide default policy: a broken one stops start-up.
    fn default_policy(
        &self,
        path: &Path,
    ) -> Result<std::sync::Arc<crate::policy::Policy>, ConfigError> {
        let origin = self.origin("default_policy_file");
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                origin.clone(),
                format!("cannot read `{}`: {error}", path.display()),
            )
        })?;
        crate::policy::parse_policy(&text)
            .map(std::sync::Arc::new)
            .map_err(|errors| {
                ConfigError::new(
                    origin,
                    format!(
                        "the default policy is invalid:\n{}",
                        errors.render(&path.display().to_string())
                    ),
                )
            })
    }

    fn require_http(&self, key: &str, url: &url::Url) -> Result<(), ConfigError> {
        if matches!(url.scheme(), "http" | "https") && url.has_host() {
            Ok(())
        } else {
            Err(ConfigError::new(
                self.origin(key),
                format!("`{url}` is not an http(s) URL with a host"),
            ))
        }
    }

    fn github_credentials(
        &self,
        token: Option<Vec<String>>,
        token_file: Option<PathBuf>,
        app_id: Option<u64>,
        private_key_file: Option<PathBuf>,
    ) -> Result<GithubCredentials, ConfigError> {
        let mut tokens = self.secrets("github_token", token, token_file)?;
        let app_id = self.plain::<u64>("github_app_id", app_id.map(|v| v.to_string()))?;
        let key_file =
            self.plain::<PathBuf>("github_private_key_file", private_key_file.map(path_text))?;
        match (tokens.pop(), app_id, key_file) {
            (Some(_), Some(_), _) => Err(ConfigError::new(
                self.origin("github_token"),
                "both a GitHub token and a GitHub App id are set; use one mode: \
                 TOLLGATE_GITHUB_TOKEN, or TOLLGATE_GITHUB_APP_ID with TOLLGATE_GITHUB_PRIVATE_KEY_FILE",
            )),
            (Some(token), None, _) => Ok(GithubCredentials::Token(token)),
            (None, Some(app_id), Some(private_key_file)) => {
                if let Err(error) = std::fs::metadata(&private_key_file) {
                    return Err(ConfigError::new(
                        self.origin("github_private_key_file"),
                        format!("cannot read `{}`: {error}", private_key_file.display()),
                    ));
                }
                Ok(GithubCredentials::App {
                    app_id,
                    private_key_file,
                })
            }
            (None, Some(_), None) => Err(ConfigError::new(
                self.origin("github_app_id"),
                "App mode needs the App's private key too: set TOLLGATE_GITHUB_PRIVATE_KEY_FILE",
            )),
            (None, None, Some(_)) => Err(ConfigError::new(
                self.origin("github_private_key_file"),
                "a private key without an App id: set TOLLGATE_GITHUB_APP_ID",
            )),
            (None, None, None) => Ok(GithubCredentials::None),
        }
    }

    fn gitlab(&self, f: FileGitlab) -> Result<GitlabConfig, ConfigError> {
        let url = self.plain::<url::Url>("gitlab_url", f.url)?;
        if let Some(url) = &url {
            self.require_http("gitlab_url", url)?;
        }
        let mut tokens = self.secrets("gitlab_token", f.token.map(|t| vec![t]), f.token_file)?;
        let token = tokens.pop();
        if token.is_some() && url.is_none() {
            return Err(ConfigError::new(
                self.origin("gitlab_token"),
                "a GitLab token needs the instance it is for: set TOLLGATE_GITLAB_URL \
                 (e.g. https://gitlab.com)",
            ));
        }
        let webhook_tokens = self.secrets(
            "gitlab_webhook_token",
            f.webhook_token.map(OneOrMany::into_vec),
            f.webhook_token_file,
        )?;
        Ok(GitlabConfig {
            url,
            token,
            webhook_tokens,
        })
    }
}

/// The GitLab half of the file, moved out for [`Layered::gitlab`].
struct FileGitlab {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    webhook_token: Option<OneOrMany>,
    webhook_token_file: Option<PathBuf>,
}

fn path_text(path: PathBuf) -> String {
    path.display().to_string()
}

/// What a valid value of a plain key looks like, appended to parse errors.
fn hint(key: &str) -> &'static str {
    match key {
        "listen" => " (expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080)",
        "github_api_url" => {
            " (expected a URL, e.g. https://api.github.com or https://ghe.example.com/api/v3)"
        }
        "gitlab_url" => " (expected the instance root, e.g. https://gitlab.com)",
        "public_url" => {
            " (expected the address people reach tollgate at, e.g. https://tollgate.example.com)"
        }
        "github_app_id"
        | "drain_timeout_secs"
        | "workers"
        | "job_lease_secs"
        | "job_give_up_secs"
        | "scheduler_poll_secs" => " (expected a whole number)",
        _ => "",
    }
}

/// Reads a secrets file: one secret per line (several lines = rotation), blank lines ignored,
/// trailing whitespace and line ends trimmed.
fn read_secret_file(origin: &str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(origin, format!("cannot read `{}`: {error}", path.display()))
    })?;
    let secrets: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if secrets.is_empty() {
        return Err(ConfigError::new(
            origin,
            format!("`{}` holds no secret", path.display()),
        ));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use secrecy::ExposeSecret;

    use super::*;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(contents: &str, pairs: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let file = file(contents);
        ServerConfig::load_from(Some(file.path()), &env(pairs))
    }

    fn exposed(secrets: &[SecretString]) -> Vec<&str> {
        secrets.iter().map(|s| s.expose_secret()).collect()
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.database_url, "sqlite://tollgate.db");
        assert_eq!(config.github.api_url.as_str(), "https://api.github.com/");
        assert_eq!(config.check_name, "tollgate");
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        assert_eq!(config.mode(), Mode::DryRun);
        assert!(config.github.webhook_secrets.is_empty());
        assert_eq!(config.jobs, JobSettings::default());
        assert_eq!(config.jobs.workers, 4);
        assert_eq!(config.jobs.lease, Duration::from_secs(30));
    }

    #[test]
    fn job_settings_come_from_the_file_and_the_environment() {
        let config = load(
            "workers = 0
job_lease_secs = 5
",
            &[
                ("TOLLGATE_JOB_GIVE_UP_SECS", "60"),
                ("TOLLGATE_SCHEDULER_POLL_SECS", "2"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.jobs,
            JobSettings {
                workers: 0,
                lease: Duration::from_secs(5),
                give_up_after: Duration::from_secs(60),
                scheduler_poll: Duration::from_secs(2),
            }
        );
        let error = load("", &[("TOLLGATE_SCHEDULER_POLL_SECS", "0")]).unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
        let error = load("", &[("TOLLGATE_JOB_LEASE_SECS", "0")]).unwrap_err();
        assert!(
            error.to_string().contains("TOLLGATE_JOB_LEASE_SECS"),
            "{error}"
        );
        assert!(error.to_string().contains("at least 1"), "{error}");
        let error = load("", &[("TOLLGATE_WORKERS", "many")]).unwrap_err();
        assert!(error.to_string().contains("whole number"), "{error}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        let config = load(
            "listen = \"0.0.0.0:9000\"\ncheck_name = \"file\"\n",
            &[
                ("TOLLGATE_LISTEN", "127.0.0.1:9100"),
                ("TOLLGATE_DRAIN_TIMEOUT_SECS", "7"),
            ],
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(config.check_name, "file");
        assert_eq!(config.drain_timeout, Duration::from_secs(7));
    }

    #[test]
    fn an_unknown_key_in_the_file_names_line_column_and_the_keys() {
        let error = load("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n", &[]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("line 2, column 1"), "{text}");
        assert!(text.contains("listen_adress"), "{text}");
        assert!(text.contains("hint: the keys are: listen,"), "{text}");
    }

    #[test]
    fn a_bad_value_names_its_key_and_what_a_good_one_looks_like() {
        let error = load("", &[("TOLLGATE_LISTEN", "localhost")]).unwrap_err();
        assert_eq!(error.key, "TOLLGATE_LISTEN");
        assert!(error.message.contains("HOST:PORT"), "{error}");
        let f = file("drain_timeout_secs = \"soon\"\n");
        let error = ServerConfig::load_from(Some(f.path()), &env(&[])).unwrap_err();
        assert!(error.to_string().contains("drain_timeout_secs"), "{error}");
        let error = load("github_api_url = \"ftp://example.com\"\n", &[]).unwrap_err();
        assert!(error.key.contains("github_api_url"), "{error}");
        let error = load("", &[("TOLLGATE_LOG_FORMAT", "xml")]).unwrap_err();
        assert!(error.message.contains("`text` or `json`"), "{error}");
    }

    #[test]
    fn a_missing_explicit_config_file_is_an_error() {
        let error =
            ServerConfig::load_from(Some(Path::new("/nonexistent/tollgate.toml")), &env(&[]))
                .unwrap_err();
        assert!(error.key.contains("/nonexistent/tollgate.toml"), "{error}");
    }

    #[test]
    fn secrets_come_from_env_verbatim_without_literal_parsing() {
        for raw in ["true", "[abc]", "\"quoted\"", "12345", " spaced "] {
            let config = load("", &[("TOLLGATE_GITHUB_WEBHOOK_SECRET", raw)]).unwrap();
            assert_eq!(exposed(&config.github.webhook_secrets), [raw]);
        }
    }

    #[test]
    fn secret_files_hold_one_secret_per_line_for_rotation() {
        let secrets = file("new-secret\nold-secret\n\n");
        let config = load(
            "",
            &[(
                "TOLLGATE_GITHUB_WEBHOOK_SECRET_FILE",
                secrets.path().to_str().unwrap(),
            )],
        )
        .unwrap();
        assert_eq!(
            exposed(&config.github.webhook_secrets),
            ["new-secret", "old-secret"]
        );
        let config = load("gitlab_webhook_token = [\"one\", \"two\"]\n", &[]).unwrap();
        assert_eq!(exposed(&config.gitlab.webhook_tokens), ["one", "two"]);
    }

    #[test]
    fn a_secret_and_its_file_together_are_refused() {
        let secrets = file("from-file\n");
        let error = load(
            "",
            &[
                ("TOLLGATE_GITHUB_TOKEN", "from-env"),
                (
                    "TOLLGATE_GITHUB_TOKEN_FILE",
                    secrets.path().to_str().unwrap(),
                ),
            ],
        )
        .unwrap_err();
        assert!(error.message.contains("github_token_file"), "{error}");
        assert!(!error.to_string().contains("from-env"));
        assert!(!error.to_string().contains("from-file"));
    }

    #[test]
    fn an_unreadable_or_empty_secret_file_is_an_error() {
        let error = load(
            "",
            &[("TOLLGATE_GITLAB_WEBHOOK_TOKEN_FILE", "/nonexistent/token")],
        )
        .unwrap_err();
        assert_eq!(error.key, "TOLLGATE_GITLAB_WEBHOOK_TOKEN_FILE");
        let empty = file("\n\n");
        let error = load(
            "",
            &[(
                "TOLLGATE_GITLAB_WEBHOOK_TOKEN_FILE",
                empty.path().to_str().unwrap(),
            )],
        )
        .unwrap_err();
        assert!(error.message.contains("holds no secret"), "{error}");
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let key = file("-----BEGIN PRIVATE KEY-----\n");
        let config = load(
            "gitlab_url = \"https://gitlab.example.com\"\n",
            &[
                ("TOLLGATE_GITHUB_WEBHOOK_SECRET", "hook-secret-value"),
                ("TOLLGATE_GITHUB_TOKEN", "ghp_token_value"),
                ("TOLLGATE_GITLAB_TOKEN", "glpat_token_value"),
                ("TOLLGATE_GITLAB_WEBHOOK_TOKEN", "gitlab-hook-value"),
            ],
        )
        .unwrap();
        let debug = format!("{config:?}");
        for secret in [
            "hook-secret-value",
            "ghp_token_value",
            "glpat_token_value",
            "gitlab-hook-value",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert_eq!(config.mode(), Mode::Live);
        drop(key);
    }

    #[test]
    fn github_modes_are_exclusive_and_complete() {
        let key = file("-----BEGIN PRIVATE KEY-----\n");
        let key_path = key.path().to_str().unwrap();
        let app = load(
            "",
            &[
                ("TOLLGATE_GITHUB_APP_ID", "123"),
                ("TOLLGATE_GITHUB_PRIVATE_KEY_FILE", key_path),
            ],
        )
        .unwrap();
        assert!(matches!(
            app.github.credentials,
            GithubCredentials::App { app_id: 123, .. }
        ));

        let error = load("", &[("TOLLGATE_GITHUB_APP_ID", "123")]).unwrap_err();
        assert_eq!(error.key, "TOLLGATE_GITHUB_APP_ID");
        assert!(
            error.message.contains("TOLLGATE_GITHUB_PRIVATE_KEY_FILE"),
            "{error}"
        );

        let error = load(
            "",
            &[
                ("TOLLGATE_GITHUB_APP_ID", "123"),
                ("TOLLGATE_GITHUB_TOKEN", "t"),
            ],
        )
        .unwrap_err();
        assert!(error.message.contains("use one mode"), "{error}");

        let error = load(
            "",
            &[
                ("TOLLGATE_GITHUB_APP_ID", "123"),
                ("TOLLGATE_GITHUB_PRIVATE_KEY_FILE", "/nonexistent/key.pem"),
            ],
        )
        .unwrap_err();
        assert_eq!(error.key, "TOLLGATE_GITHUB_PRIVATE_KEY_FILE");
    }

    #[test]
    fn a_gitlab_token_needs_the_instance_url() {
        let error = load("", &[("TOLLGATE_GITLAB_TOKEN", "glpat")]).unwrap_err();
        assert_eq!(error.key, "TOLLGATE_GITLAB_TOKEN");
        assert!(error.message.contains("TOLLGATE_GITLAB_URL"), "{error}");
    }

    #[test]
    fn a_default_policy_is_validated_at_start_up() {
        let good = file("version = 1\n[tiers.low]\n");
        let config = load(
            "",
            &[(
                "TOLLGATE_DEFAULT_POLICY_FILE",
                good.path().to_str().unwrap(),
            )],
        )
        .unwrap();
        assert!(config.default_policy.is_some());
        let bad = file("version = 1\n[tiers.low]\nsign_offs = [\"ghost\"]\n");
        let error = load(
            "",
            &[("TOLLGATE_DEFAULT_POLICY_FILE", bad.path().to_str().unwrap())],
        )
        .unwrap_err();
        assert_eq!(error.key, "TOLLGATE_DEFAULT_POLICY_FILE");
        assert!(
            error.message.contains(":3:14: role `ghost` is not defined"),
            "{error}"
        );
    }

    #[test]
    fn unknown_tollgate_variables_are_reported_by_name() {
        let vars = env(&[
            ("TOLLGATE_LISTEN", "x"),
            ("TOLLGATE_LISTN", "x"),
            ("TOLLGATE_GITHUB_WEBHOOK_SECRET_FILE", "x"),
        ]);
        assert_eq!(ServerConfig::unknown_env_vars(&vars), ["TOLLGATE_LISTN"]);
    }
}
