//! Redaction: the secret, agent tokens, and the values of environment variables
//! whose names contain `KEY`, `TOKEN` or `SECRET` never reach a log converge
//! writes (agent output, invariant output, event messages, output tails in
//! status).

use std::borrow::Cow;

/// What replaces a redacted value.
pub const MASK: &str = "[redacted]";

/// Values shorter than this are not redacted: masking every `1` or `true` in
/// a log would destroy it and protect nothing.
const MIN_LEN: usize = 6;

/// Whether an environment variable's value is sensitive, by its name.
pub fn is_sensitive_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET"]
        .iter()
        .any(|word| upper.contains(word))
}

/// A set of values to mask.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a value containing another is masked whole.
    values: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// Masks these values (short and duplicate ones are skipped).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .map(|v| v.trim().to_owned())
            .filter(|v| v.len() >= MIN_LEN)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { values }
    }

    /// Masks the sensitive variables of an environment (by name), and `extra`.
    /// `std::env::vars()` may be passed as it is.
    pub fn from_env<K: AsRef<str>, V: AsRef<str>>(
        env: impl IntoIterator<Item = (K, V)>,
        extra: impl IntoIterator<Item = String>,
    ) -> Self {
        let sensitive = env
            .into_iter()
            .filter(|(name, _)| is_sensitive_name(name.as_ref()))
            .map(|(_, value)| value.as_ref().to_owned());
        Redactor::new(sensitive.chain(extra))
    }

    /// The values of converge's own sensitive environment variables and the
    /// secret (when it is text), for logs the reconciler writes.
    pub fn for_reconciler(secret: &super::Secret) -> Self {
        Redactor::from_env(std::env::vars(), secret.as_text())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every value masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.values.iter().any(|v| text.contains(v.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        Cow::Owned(out)
    }

    /// Bytes with every value masked (lossless for bytes that are not UTF-8:
    /// those are passed through as they are).
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let hit = self
            .values
            .iter()
            .any(|v| memchr::memmem::find(bytes, v.as_bytes()).is_some());
        if !hit {
            return Cow::Borrowed(bytes);
        }
        let mut out = bytes.to_vec();
        for value in &self.values {
            let needle = value.as_bytes();
            let mut result = Vec::with_capacity(out.len());
            let mut rest = out.as_slice();
            while let Some(i) = memchr::memmem::find(rest, needle) {
                result.extend_from_slice(&rest[..i]);
                result.extend_from_slice(MASK.as_bytes());
                rest = &rest[i + needle.len()..];
            }
            result.extend_from_slice(rest);
            out = result;
        }
        Cow::Owned(out)
    }

    /// The longest value, in bytes: a streaming redactor keeps this much of the
    /// end of each chunk back, so that a value split across reads is masked.
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names() {
        for name in [
            "ANTHROPIC_API_KEY",
            "GITHUB_TOKEN",
            "CONVERGE_SECRET",
            "aws_secret_access_key",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in ["PATH", "HOME", "LANG"] {
            assert!(!is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn masks_values_longest_first_and_skips_short_ones() {
        let r = Redactor::from_env(
            [
                ("API_KEY", "sk-abcdef123456"),
                ("PATH", "/usr/bin"),
                ("SHORT_TOKEN", "1"),
            ],
            ["sk-abcdef".to_owned()],
        );
        assert_eq!(
            r.redact("key=sk-abcdef123456 prefix=sk-abcdef path=/usr/bin n=1"),
            "key=[redacted] prefix=[redacted] path=/usr/bin n=1"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert_eq!(
            r.redact_bytes(b"\xff sk-abcdef123456 \xfe").as_ref(),
            b"\xff [redacted] \xfe"
        );
        assert_eq!(r.longest(), "sk-abcdef123456".len());
    }
}
