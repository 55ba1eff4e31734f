//! GitHub's REST v3 API through octocrab: one client per installation (App mode) or one for
//! the token, with retries off (tollgate retries idempotent calls itself; octocrab's retry
//! would re-send a POST) and explicit timeouts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue, IF_NONE_MATCH, USER_AGENT};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId as OctoInstallationId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::event::InstallationId;

/// How long to wait for a connection to GitHub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an answer once connected.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Items per page when listing (GitHub's maximum).
pub const PER_PAGE: u32 = 100;

/// A failure talking to GitHub.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error or could not be reached.
    #[error("GitHub API: {}", describe(.0))]
    Octocrab(#[from] octocrab::Error),
    /// The App's private key is not a usable RSA PEM key.
    #[error("the GitHub App private key cannot be used: {0}")]
    PrivateKey(String),
    /// A response did not have the expected shape.
    #[error("unexpected answer from GitHub for {what}: {message}")]
    Unexpected {
        /// Which call.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// tollgate's own store failed while acting on GitHub's answers (the evaluation is tried
    /// again like after a GitHub error; the message must not blame GitHub).
    #[error("{what} could not be used: {message}")]
    Store {
        /// Which store (the audit ledger, the job queue, the incident store).
        what: String,
        /// What went wrong.
        message: String,
    },
}

impl ApiError {
    /// How long GitHub asks tollgate to wait, when this is a rate limit: a 403 or 429 with
    /// `Retry-After` (secondary limits), or with `x-ratelimit-remaining: 0` and
    /// `x-ratelimit-reset` (the primary budget is spent until then).
    pub fn rate_limit_wait(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let ApiError::Octocrab(octocrab::Error::GitHub { source, .. }) = self else {
            return None;
        };
        if !matches!(source.status_code.as_u16(), 403 | 429) {
            return None;
        }
        let headers = source.headers.as_ref()?;
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(seconds) = number("retry-after") {
            return Some(Duration::from_secs(seconds));
        }
        if number("x-ratelimit-remaining") == Some(0) {
            let reset = source.rate_limit_reset?;
            let now = u64::try_from(now.timestamp()).unwrap_or(0);
            // A second more: the reset time is rounded down.
            return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
        }
        None
    }
}

/// octocrab's `Display` of an API error is just "GitHub"; say what GitHub answered.
fn describe(error: &octocrab::Error) -> String {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            format!("{} {}", source.status_code, source.message)
        }
        other => {
            let mut text = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(inner) = cause {
                text.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            text
        }
    }
}

/// How tollgate authenticates.
pub enum Auth {
    /// A token (token mode: commit statuses only; GitHub lets only Apps create check runs).
    Token(SecretString),
    /// A GitHub App: JWT from the private key, then an installation token per installation.
    App {
        /// The App's id.
        app_id: u64,
        /// The App's private key (PEM).
        private_key_pem: SecretString,
    },
}

/// Who tollgate is on GitHub; only comments by this login are tollgate's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `<slug>[bot]` in App mode, the token's user in token mode.
    pub login: String,
    /// The App's id (App mode), to recognise its own check runs.
    pub app_id: Option<u64>,
}

/// The GitHub API for every installation tollgate serves.
pub struct GithubApi {
    base: Arc<Octocrab>,
    /// The API root the clients talk to.
    api_url: url::Url,
    app_mode: bool,
    /// Installation clients, kept (and shared, never cloned: a cloned `Octocrab` copies its
    /// token cache) so the installation token is reused until shortly before it expires
    /// instead of minted per evaluation.
    installations: Mutex<HashMap<u64, Arc<Octocrab>>>,
}

impl GithubApi {
    /// Builds a client for `api_url` (`https://api.github.com`, GitHub Enterprise's
    /// `https://HOST/api/v3`, or a test fake).
    pub fn new(api_url: &url::Url, auth: Auth) -> Result<Self, ApiError> {
        let builder = Octocrab::builder()
            .base_uri(api_url.as_str())?
            .add_header(
                USER_AGENT,
                concat!("tollgate/", env!("CARGO_PKG_VERSION")).to_owned(),
            )
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .set_read_timeout(Some(READ_TIMEOUT));
        let (builder, app_mode) = match auth {
            Auth::Token(token) => (
                builder.personal_token(token.expose_secret().to_owned()),
                false,
            ),
            Auth::App {
                app_id,
                private_key_pem,
            } => {
                let key =
                    octocrab::EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes())
                        .map_err(|e| ApiError::PrivateKey(e.to_string()))?;
                (builder.app(AppId(app_id), key), true)
            }
        };
        Ok(GithubApi {
            base: Arc::new(builder.build()?),
            api_url: api_url.clone(),
            app_mode,
            installations: Mutex::new(HashMap::new()),
        })
    }

    /// The route of an API URL a payload gave (a deployment's callback), when it is on this
    /// API: tollgate sends its token to the API it was configured with, nowhere else.
    pub fn route_of(&self, url: &str) -> Option<String> {
        let url = url::Url::parse(url).ok()?;
        let base = &self.api_url;
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return None;
        }
        let prefix = base.path().trim_end_matches('/');
        let rest = url.path().strip_prefix(prefix)?;
        rest.starts_with('/').then(|| rest.to_owned())
    }

    /// Whether tollgate runs as a GitHub App (check runs) rather than with a token (statuses).
    pub fn app_mode(&self) -> bool {
        self.app_mode
    }

    /// The client to act for an installation (App mode) or the token client.
    pub fn client(&self, installation: Option<InstallationId>) -> Result<Arc<Octocrab>, ApiError> {
        let Some(InstallationId(id)) = installation.filter(|_| self.app_mode) else {
            if self.app_mode {
                return Err(ApiError::Unexpected {
                    what: "an App delivery".to_owned(),
                    message: "the delivery names no installation".to_owned(),
                });
            }
            return Ok(Arc::clone(&self.base));
        };
        let mut cache = self.installations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = cache.get(&id) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(self.base.installation(OctoInstallationId(id))?);
        cache.insert(id, Arc::clone(&client));
        Ok(client)
    }

    /// tollgate's own identity (`GET /app` or `GET /user`).
    pub async fn identity(&self) -> Result<Identity, ApiError> {
        #[derive(Deserialize)]
        struct App {
            id: u64,
            slug: String,
        }
        #[derive(Deserialize)]
        struct User {
            login: String,
        }
        if self.app_mode {
            let app: App = self.base.get("/app", None::<&()>).await?;
            Ok(Identity {
                login: format!("{}[bot]", app.slug),
                app_id: Some(app.id),
            })
        } else {
            let user: User = self.base.get("/user", None::<&()>).await?;
            Ok(Identity {
                login: user.login,
                app_id: None,
            })
        }
    }
}

/// Every item of a paginated list, up to `cap` items. GitHub's `Link` header says whether
/// there is a next page; the next page is then asked for by number on the same relative
/// route, because octocrab sends credentials only to api.github.com or relative URIs (an
/// absolute `Link` URL from GitHub Enterprise or a test server would go out unauthenticated).
pub async fn all_pages<T: DeserializeOwned>(
    client: &Octocrab,
    route: &str,
    cap: usize,
) -> Result<Vec<T>, ApiError> {
    let separator = if route.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    for page in 1.. {
        let mut current: octocrab::Page<T> = client
            .get(
                format!("{route}{separator}per_page={PER_PAGE}&page={page}"),
                None::<&()>,
            )
            .await?;
        items.append(&mut current.items);
        if current.next.is_none() || items.len() >= cap {
            break;
        }
    }
    Ok(items)
}

/// A file read through the contents API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAt {
    /// The file's text.
    Text(String),
    /// No such file at that ref.
    Missing,
}

/// Reads a file at a commit. `etag` is the cached entity tag, sent as `If-None-Match`:
/// GitHub answers `304 Not Modified` (free of rate limit) when it still holds, and `None` is
/// returned for "use your cached copy".
pub async fn read_file(
    client: &Octocrab,
    repo: &str,
    path: &str,
    git_ref: &str,
    etag: Option<&str>,
) -> Result<Option<(FileAt, Option<String>)>, ApiError> {
    #[derive(Deserialize)]
    struct Contents {
        content: Option<String>,
        encoding: Option<String>,
    }
    let uri = format!(
        "/repos/{repo}/contents/{}?ref={}",
        encode_path(path),
        encode_component(git_ref)
    );
    let mut headers = HeaderMap::new();
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(IF_NONE_MATCH, tag);
    }
    let response = client
        ._get_with_headers(uri.as_str(), Some(headers))
        .await?;
    let status = response.status();
    if status == http::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if status == http::StatusCode::NOT_FOUND {
        return Ok(Some((FileAt::Missing, None)));
    }
    let new_etag = response
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = octocrab::map_github_error(response).await?;
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unexpected(&uri, e))?
        .to_bytes();
    let contents: Contents = serde_json::from_slice(&bytes).map_err(|e| unexpected(&uri, e))?;
    let text = match (contents.encoding.as_deref(), contents.content) {
        (Some("base64"), Some(encoded)) => {
            let compact: String = encoded.split_whitespace().collect();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| unexpected(&uri, e))?;
            String::from_utf8(raw).map_err(|e| unexpected(&uri, e))?
        }
        (_, Some(plain)) => plain,
        (_, None) => {
            return Err(unexpected(
                &uri,
                "no content (a folder, or a file over 1 MB)",
            ));
        }
    };
    Ok(Some((FileAt::Text(text), new_etag)))
}

fn unexpected(what: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::Unexpected {
        what: what.to_owned(),
        message: error.to_string(),
    }
}

/// Percent-encodes one URL component.
pub fn encode_component(text: &str) -> String {
    // Form encoding writes a space as `+`, which in a path is a literal plus; a literal plus
    // itself comes out as `%2B`, so turning `+` into `%20` is exact.
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Percent-encodes a file path, keeping its slashes.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_is_not_blamed_on_github_and_waits_for_no_rate_limit() {
        let error = ApiError::Store {
            what: "the job queue".to_owned(),
            message: "database is locked".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "the job queue could not be used: database is locked"
        );
        assert_eq!(error.rate_limit_wait(chrono::Utc::now()), None);
    }

    #[test]
    fn paths_keep_their_slashes_and_encode_spaces_for_a_path() {
        // `+` in a URL path is a literal plus: a space must be `%20`.
        assert_eq!(
            encode_path("models/fraud card+v2.md"),
            "models/fraud%20card%2Bv2.md"
        );
        assert_eq!(encode_component("feature/a b"), "feature%2Fa%20b");
    }

    #[tokio::test]
    async fn a_callback_url_is_followed_only_on_the_configured_api() {
        let api = |root: &str| {
            GithubApi::new(
                &root.parse().unwrap(),
                Auth::Token(secrecy::SecretString::from("t")),
            )
            .unwrap()
        };
        let github = api("https://api.github.com");
        let route = "/repos/o/r/actions/runs/7/deployment_protection_rule";
        assert_eq!(
            github.route_of(&format!("https://api.github.com{route}")),
            Some(route.to_owned())
        );
        for elsewhere in [
            format!("https://evil.example{route}"),
            format!("http://api.github.com{route}"),
            format!("https://api.github.com:8443{route}"),
        ] {
            assert_eq!(github.route_of(&elsewhere), None, "{elsewhere}");
        }
        let enterprise = api("https://ghe.example/api/v3");
        assert_eq!(
            enterprise.route_of(&format!("https://ghe.example/api/v3{route}")),
            Some(route.to_owned())
        );
        assert_eq!(
            enterprise.route_of(&format!("https://ghe.example{route}")),
            None
        );
    }
}
