//! tollgate's Ed25519 signing key: PKCS#8 PEM for the private key, SPKI PEM for the public
//! key (the formats `openssl pkey` reads).

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;

/// File names `tollgate keygen` writes.
pub const PRIVATE_KEY_FILE: &str = "tollgate-signing.key";
/// The public half.
pub const PUBLIC_KEY_FILE: &str = "tollgate-signing.pub";

/// A key could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

fn key_error(path: &Path, message: impl ToString) -> KeyError {
    KeyError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A new random key.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}

/// The public key as PEM.
pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// Writes a key pair into `dir` (the private key readable by its owner only). Refuses to
/// overwrite an existing private key: losing it would orphan every signature made with it.
pub fn write_pair(dir: &Path, key: &SigningKey) -> Result<(PathBuf, PathBuf), KeyError> {
    std::fs::create_dir_all(dir).map_err(|e| key_error(dir, e))?;
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    if private.exists() {
        return Err(key_error(
            &private,
            "already exists; refusing to overwrite a signing key",
        ));
    }
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_error(&private, e))?;
    write_private(&private, pem.as_bytes())?;
    std::fs::write(&public, public_pem(&key.verifying_key())).map_err(|e| key_error(&public, e))?;
    Ok((private, public))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| key_error(path, e))?;
    file.write_all(bytes).map_err(|e| key_error(path, e))
}

/// Reads a private key (PKCS#8 PEM).
pub fn read_private(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| key_error(path, format!("not an Ed25519 PKCS#8 PEM private key: {e}")))
}

/// Reads a public key (SPKI PEM).
pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| key_error(path, format!("not an Ed25519 public key PEM: {e}")))
}

/// The server's key: the configured file, else one kept in the data directory, generated on
/// first start. Returns the key and whether it was just generated (worth a log line).
pub fn load_or_create(
    configured: Option<&Path>,
    data_dir: &Path,
) -> Result<(SigningKey, bool), KeyError> {
    if let Some(path) = configured {
        return Ok((read_private(path)?, false));
    }
    let path = data_dir.join(PRIVATE_KEY_FILE);
    if path.exists() {
        return Ok((read_private(&path)?, false));
    }
    let key = generate();
    write_pair(data_dir, &key)?;
    Ok((key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_pair_reads_back_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate();
        let (private, public) = write_pair(dir.path(), &key).unwrap();
        assert_eq!(read_private(&private).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(read_public(&public).unwrap(), key.verifying_key());
        assert!(write_pair(dir.path(), &generate()).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_server_key_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = load_or_create(None, dir.path()).unwrap();
        assert!(created);
        let (second, created) = load_or_create(None, dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.to_bytes(), second.to_bytes());
    }
}
