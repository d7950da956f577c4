//! Agent tokens: `cvg1.<plan>.<task>.<attempt>.<hex hmac-sha256>`.
//!
//! A token is scoped to one attempt of one task. It is minted from a secret that
//! never enters an agent's environment, and verified in constant time when the
//! reconciler reads an agent's events. Names cannot contain `.` (see
//! `spec::names`), so the format splits unambiguously.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "cvg1";
/// The environment variable that may hold the secret instead of the file.
pub const SECRET_ENV: &str = "CONVERGE_SECRET";
/// Bytes of a generated secret.
const SECRET_LEN: usize = 32;

/// The signing secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret at {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the secret at {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret at {} is readable by others (mode {mode:o}); it must be 0600", path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the secret at {} is too short ({len} bytes; at least 16 are needed)", path.display())]
    TooShort { path: PathBuf, len: usize },
    #[error("${SECRET_ENV} is set but shorter than 16 bytes")]
    EnvTooShort,
}

impl Secret {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The secret from `$CONVERGE_SECRET`, else `<common-dir>/converge/secret`,
    /// created (0600, 32 random bytes) if missing. A file readable by group or
    /// others is refused rather than used.
    pub fn load_or_create(common_dir: &Path) -> Result<Secret, SecretError> {
        if let Some(value) = std::env::var_os(SECRET_ENV) {
            let bytes = value.into_encoded_bytes();
            if bytes.len() < 16 {
                return Err(SecretError::EnvTooShort);
            }
            return Ok(Secret(bytes));
        }
        let path = Self::path(common_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&path)
                    .map_err(|source| SecretError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(SecretError::Permissions {
                        path,
                        mode: mode & 0o777,
                    });
                }
                if bytes.is_empty() {
                    // What an earlier version left when it was killed while
                    // creating the secret: never used (nothing accepts an
                    // empty key), so it is made anew.
                    std::fs::remove_file(&path).map_err(|source| SecretError::Create {
                        path: path.clone(),
                        source,
                    })?;
                    return Self::create(&path);
                }
                if bytes.len() < 16 {
                    return Err(SecretError::TooShort {
                        path,
                        len: bytes.len(),
                    });
                }
                Ok(Secret(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(source) => Err(SecretError::Read { path, source }),
        }
    }

    /// Forms in which the secret could appear in text: as it is (when it is
    /// text, as `$CONVERGE_SECRET` is) and in hex. For redaction.
    pub fn as_text(&self) -> Vec<String> {
        let mut forms = Vec::new();
        if let Ok(text) = std::str::from_utf8(&self.0) {
            forms.push(text.to_owned());
        }
        forms.push(hex(&self.0));
        forms
    }

    pub fn path(common_dir: &Path) -> PathBuf {
        crate::rundir::Layout::new(common_dir).secret()
    }

    fn create(path: &Path) -> Result<Secret, SecretError> {
        let create_err = |source| SecretError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(create_err)?;
        }
        let mut bytes = vec![0u8; SECRET_LEN];
        let mut random = std::fs::File::open("/dev/urandom").map_err(create_err)?;
        std::io::Read::read_exact(&mut random, &mut bytes).map_err(create_err)?;
        // Written whole under a name of this process's, then linked into place:
        // a process killed at any instant leaves either no secret or a whole
        // one (never an empty file that stops every later tick), and if
        // another reconciler raced us, the link fails and we use its file.
        let temp = crate::rundir::layout::secret_temp(path, std::process::id());
        let _ = std::fs::remove_file(&temp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(create_err(source));
        }
        let linked = std::fs::hard_link(&temp, path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(Secret(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Ok(Secret(bytes))
            }
            Err(source) => Err(create_err(source)),
        }
    }

    fn mac(&self, plan: &str, task: &str, attempt: u32) -> HmacSha256 {
        // new_from_slice accepts keys of any length for HMAC.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        mac.update(format!("{PREFIX}\0{plan}\0{task}\0{attempt}").as_bytes());
        mac
    }

    /// A token for one attempt of one task.
    pub fn mint(&self, plan: &str, task: &str, attempt: u32) -> String {
        let tag = self.mac(plan, task, attempt).finalize().into_bytes();
        format!("{PREFIX}.{plan}.{task}.{attempt}.{}", hex(&tag))
    }

    /// Verifies that `token` was minted for exactly this plan, task and attempt.
    pub fn verify(
        &self,
        token: &str,
        plan: &str,
        task: &str,
        attempt: u32,
    ) -> Result<(), TokenError> {
        let parsed = Token::parse(token)?;
        if parsed.plan != plan || parsed.task != task {
            return Err(TokenError::WrongTask {
                token_for: format!("{}/{}", parsed.plan, parsed.task),
            });
        }
        if parsed.attempt != attempt {
            return Err(TokenError::WrongAttempt {
                token_for: parsed.attempt,
                current: attempt,
            });
        }
        let tag = decode_hex(parsed.tag).ok_or(TokenError::Malformed)?;
        self.mac(plan, task, attempt)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Forged)
    }
}

/// HMAC accepts every key length; this cannot happen.
#[cold]
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA256 rejected a key; HMAC accepts keys of any length")
}

/// The parts of a token, before verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    pub plan: &'a str,
    pub task: &'a str,
    pub attempt: u32,
    tag: &'a str,
}

impl<'a> Token<'a> {
    pub fn parse(token: &'a str) -> Result<Token<'a>, TokenError> {
        let mut parts = token.split('.');
        let (Some(PREFIX), Some(plan), Some(task), Some(attempt), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let attempt = attempt.parse().map_err(|_| TokenError::Malformed)?;
        if plan.is_empty() || task.is_empty() || tag.len() != 64 {
            return Err(TokenError::Malformed);
        }
        Ok(Token {
            plan,
            task,
            attempt,
            tag,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not of the form cvg1.<plan>.<task>.<attempt>.<signature>")]
    Malformed,
    #[error(
        "the token's signature does not match: it was not issued by this repository's converge"
    )]
    Forged,
    #[error("the token is for task {token_for}, not this one")]
    WrongTask { token_for: String },
    #[error("the token is for attempt {token_for}, but attempt {current} is current")]
    WrongAttempt { token_for: u32, current: u32 },
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn minted_tokens_verify_for_their_attempt_only() {
        let s = secret();
        let token = s.mint("auth", "define-types", 2);
        assert!(token.starts_with("cvg1.auth.define-types.2."));
        assert_eq!(s.verify(&token, "auth", "define-types", 2), Ok(()));
        assert!(matches!(
            s.verify(&token, "auth", "define-types", 3),
            Err(TokenError::WrongAttempt {
                token_for: 2,
                current: 3
            })
        ));
        assert!(matches!(
            s.verify(&token, "auth", "login", 2),
            Err(TokenError::WrongTask { .. })
        ));
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let s = secret();
        let other = Secret::from_bytes(b"another secret, sixteen+ bytes".to_vec());
        let forged = other.mint("auth", "define-types", 1);
        assert_eq!(
            s.verify(&forged, "auth", "define-types", 1),
            Err(TokenError::Forged)
        );
        let mut flipped = s.mint("auth", "define-types", 1);
        let last = flipped
            .pop()
            .map_or('0', |c| if c == '0' { '1' } else { '0' });
        flipped.push(last);
        assert_eq!(
            s.verify(&flipped, "auth", "define-types", 1),
            Err(TokenError::Forged)
        );
        for bad in [
            "",
            "cvg1",
            "cvg2.a.b.1.00",
            "cvg1.a.b.x.00",
            "cvg1.a.b.1.zz",
            "cvg1.a.b.c.1.00",
        ] {
            assert_eq!(
                s.verify(bad, "a", "b", 1),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_secret_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Not from the environment in this test.
        if std::env::var_os(SECRET_ENV).is_some() {
            return;
        }
        let first = Secret::load_or_create(dir.path()).expect("created");
        let path = Secret::path(dir.path());
        assert_eq!(
            std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let second = Secret::load_or_create(dir.path()).expect("read back");
        assert_eq!(first.mint("p", "t", 1), second.mint("p", "t", 1));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            Secret::load_or_create(dir.path()),
            Err(SecretError::Permissions { .. })
        ));
    }

    #[test]
    fn an_empty_secret_left_by_a_killed_creation_is_made_anew_and_no_temp_stays() {
        if std::env::var_os(SECRET_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = Secret::path(dir.path());
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("empty secret");
        let made = Secret::load_or_create(dir.path()).expect("made anew");
        assert_eq!(std::fs::read(&path).expect("secret").len(), SECRET_LEN);
        assert_eq!(
            Secret::load_or_create(dir.path())
                .expect("read")
                .mint("p", "t", 1),
            made.mint("p", "t", 1)
        );
        let files: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        // A short one a person wrote is still refused.
        std::fs::write(&path, b"short").expect("write");
        assert!(matches!(
            Secret::load_or_create(dir.path()),
            Err(SecretError::TooShort { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        assert_eq!(format!("{:?}", secret()), "Secret(<redacted>)");
    }
}
