//! `POST /webhook/github`: a delivery signed with the shared secret only wakes
//! a tick. The webhook is never the source of truth: the tick reads the
//! repository (and the forge) as usual, so a forged or replayed delivery can
//! at worst cost one tick, and only with the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable that holds the secret set on GitHub.
pub const SECRET_VAR: &str = "CONVERGE_WEBHOOK_SECRET";

/// The largest delivery read (GitHub caps payloads at 25 MB; a push of a few
/// thousand commits stays well under this). A larger one is refused with 413
/// and the next resync sees the change.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// What to answer a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed and not a ping: wake a tick.
    Wake,
    /// GitHub's `ping` event on creating the hook: signed, nothing to do.
    Ping,
    /// No `X-Hub-Signature-256`, or one that does not match.
    BadSignature,
    /// `CONVERGE_WEBHOOK_SECRET` is not set: nothing can be verified.
    NoSecret,
}

/// Checks `signature` (the `X-Hub-Signature-256` header, `sha256=<hex>`)
/// against the HMAC-SHA256 of `body` under `secret`, in constant time.
pub fn verify(secret: &[u8], signature: Option<&[u8]>, body: &[u8]) -> bool {
    let Some(hex) = signature.and_then(|s| s.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Some(expected) = unhex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// What to do with a delivery.
pub fn judge(
    secret: Option<&[u8]>,
    signature: Option<&[u8]>,
    event: Option<&[u8]>,
    body: &[u8],
) -> Verdict {
    let Some(secret) = secret else {
        return Verdict::NoSecret;
    };
    if !verify(secret, signature, body) {
        return Verdict::BadSignature;
    }
    if event == Some(b"ping") {
        Verdict::Ping
    } else {
        Verdict::Wake
    }
}

/// The secret from the environment; an empty value is no secret.
pub fn secret_from_env() -> Option<Vec<u8>> {
    std::env::var_os(SECRET_VAR)
        .filter(|v| !v.is_empty())
        .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented example: secret "It's a Secret to Everybody",
    // payload "Hello, World!".
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &[u8] =
        b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_example_signature_verifies_and_any_change_does_not() {
        assert!(verify(SECRET, Some(SIGNATURE), BODY));
        assert!(!verify(SECRET, Some(SIGNATURE), b"Hello, World?"));
        assert!(!verify(b"another secret", Some(SIGNATURE), BODY));
        let upper = String::from_utf8_lossy(SIGNATURE).to_uppercase();
        assert!(
            !verify(SECRET, Some(upper.as_bytes()), BODY),
            "prefix is case-sensitive"
        );
        assert!(!verify(SECRET, Some(&SIGNATURE[7..]), BODY), "no prefix");
        assert!(
            !verify(SECRET, Some(&SIGNATURE[..SIGNATURE.len() - 2]), BODY),
            "short"
        );
        assert!(!verify(SECRET, Some(b"sha256=zz"), BODY));
        assert!(!verify(SECRET, Some(b"sha1=757107ea"), BODY));
        assert!(!verify(SECRET, None, BODY));
    }

    #[test]
    fn without_a_secret_nothing_is_accepted_and_a_signed_ping_only_answers() {
        assert_eq!(judge(None, Some(SIGNATURE), None, BODY), Verdict::NoSecret);
        assert_eq!(judge(Some(SECRET), None, None, BODY), Verdict::BadSignature);
        assert_eq!(
            judge(Some(SECRET), Some(SIGNATURE), Some(b"ping"), BODY),
            Verdict::Ping
        );
        assert_eq!(
            judge(Some(SECRET), Some(SIGNATURE), Some(b"push"), BODY),
            Verdict::Wake
        );
        assert_eq!(
            judge(Some(SECRET), Some(b"sha256=00"), Some(b"ping"), BODY),
            Verdict::BadSignature,
            "an unsigned ping is refused too"
        );
    }
}
