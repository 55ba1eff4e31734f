//! Authenticating deliveries: GitHub's HMAC signature and GitLab's shared token.
//!
//! Both accept several configured secrets so that a secret can be rotated without dropping
//! deliveries: add the new one, switch the forge, remove the old one.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix GitHub puts before the hex digest in `X-Hub-Signature-256`.
const GITHUB_SIGNATURE_PREFIX: &str = "sha256=";

/// Why a delivery was not authenticated. Kept for metrics and logs only: the HTTP answer
/// never says which of these it was, so an attacker learns nothing from probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No signature or token header.
    Missing,
    /// A header that is not of the expected form (e.g. not `sha256=<64 hex>`).
    Malformed,
    /// Well-formed, but no configured secret matches.
    Mismatch,
}

impl AuthFailure {
    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Mismatch => "mismatch",
        }
    }
}

/// Checks `X-Hub-Signature-256` (HMAC-SHA256 of the raw body) against every secret, in
/// constant time per comparison.
pub fn verify_github_signature(
    header: Option<&[u8]>,
    body: &[u8],
    secrets: &[SecretString],
) -> Result<(), AuthFailure> {
    let header = header.ok_or(AuthFailure::Missing)?;
    let digest = parse_github_signature(header).ok_or(AuthFailure::Malformed)?;
    let matched = secrets.iter().any(|secret| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&digest).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(AuthFailure::Mismatch)
    }
}

/// `sha256=<64 hex digits>` → the 32 digest bytes.
fn parse_github_signature(header: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let hex_digest = text.strip_prefix(GITHUB_SIGNATURE_PREFIX)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).ok()?;
    Some(digest)
}

/// Computes the `X-Hub-Signature-256` header value GitHub would send for `body`.
/// Used by tests and the load-test client.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    // new_from_slice accepts keys of any length for HMAC; the error arm cannot happen.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!(
        "{GITHUB_SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Checks `X-Gitlab-Token` against every configured token in constant time.
///
/// Both sides are hashed first so that the comparison has a fixed length and does not reveal
/// the configured token's length.
pub fn verify_gitlab_token(
    header: Option<&[u8]>,
    tokens: &[SecretString],
) -> Result<(), AuthFailure> {
    let header = header.ok_or(AuthFailure::Missing)?;
    if header.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    let presented = Sha256::digest(header);
    let matched = tokens.iter().fold(false, |found, token| {
        let expected = Sha256::digest(token.expose_secret().as_bytes());
        // Fold over every token (no early exit) so timing does not reveal which one matched.
        found | bool::from(presented.ct_eq(&expected))
    });
    if matched {
        Ok(())
    } else {
        Err(AuthFailure::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values
            .iter()
            .map(|v| SecretString::from(v.to_string()))
            .collect()
    }

    #[test]
    fn github_signature_round_trips_with_any_configured_secret() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let header = github_signature("new-secret", body);
        let configured = secrets(&["old-secret", "new-secret"]);
        assert_eq!(
            verify_github_signature(Some(header.as_bytes()), body, &configured),
            Ok(())
        );
    }

    #[test]
    fn github_signature_failures_are_classified() {
        let body = b"{}";
        let configured = secrets(&["s3cret"]);
        assert_eq!(
            verify_github_signature(None, body, &configured),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            verify_github_signature(Some(b"sha1=abcd"), body, &configured),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            verify_github_signature(Some(b"sha256=zz"), body, &configured),
            Err(AuthFailure::Malformed)
        );
        let wrong = github_signature("other", body);
        assert_eq!(
            verify_github_signature(Some(wrong.as_bytes()), body, &configured),
            Err(AuthFailure::Mismatch)
        );
    }

    #[test]
    fn github_signature_with_no_secret_configured_never_matches() {
        let header = github_signature("", b"{}");
        assert_eq!(
            verify_github_signature(Some(header.as_bytes()), b"{}", &[]),
            Err(AuthFailure::Mismatch)
        );
    }

    #[test]
    fn gitlab_token_matches_any_configured_token() {
        let configured = secrets(&["first", "second"]);
        assert_eq!(verify_gitlab_token(Some(b"second"), &configured), Ok(()));
        assert_eq!(
            verify_gitlab_token(Some(b"secon"), &configured),
            Err(AuthFailure::Mismatch)
        );
        assert_eq!(
            verify_gitlab_token(None, &configured),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            verify_gitlab_token(Some(b""), &configured),
            Err(AuthFailure::Malformed)
        );
    }
}
