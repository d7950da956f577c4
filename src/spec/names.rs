//! Names of plans, tasks, invariants, harnesses and queue items.
//!
//! A name becomes a branch name (`converge/<plan>/<task>`) and a path segment
//! (`planning/status/<plan>.toml`, run directories), so it must be safe as both on
//! every platform: `[a-z0-9][a-z0-9_-]{0,62}`. `_` is allowed because gator's
//! names use it (`rust_build`); it is safe in branch names, paths and tokens
//! (`cvg1.<plan>.<task>...` splits on `.`, which no name contains).

/// The longest allowed name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 63;

/// Why a name is not allowed, with a suggestion where one can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameProblem {
    pub reason: String,
    pub hint: String,
}

/// Checks a name against `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn check(name: &str) -> Result<(), NameProblem> {
    let rule = "names match [a-z0-9][a-z0-9_-]{0,62}: lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit";
    let problem = |reason: String, hint: String| Err(NameProblem { reason, hint });
    if name.is_empty() {
        return problem("the name is empty".into(), rule.into());
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
        return match lookalike(c) {
            Some(ascii) => problem(
                format!(
                    "contains `{c}` ({}), a non-ASCII look-alike of `{ascii}`",
                    unicode_escape(c)
                ),
                format!("type `{}` instead", suggest(name)),
            ),
            None => problem(
                format!("contains the non-ASCII character {}", unicode_escape(c)),
                rule.into(),
            ),
        };
    }
    if name.contains("..") {
        return problem(
            "contains `..`, which could escape a directory".into(),
            rule.into(),
        );
    }
    if name.contains('/') || name.contains('\\') {
        return problem(
            "contains a path separator".into(),
            format!("{rule}; try `{}`", suggest(name)),
        );
    }
    if name.starts_with('-') {
        return problem(
            "starts with `-`, which command-line tools read as an option".into(),
            format!("try `{}`", suggest(name)),
        );
    }
    if name.starts_with('_') {
        return problem(
            "starts with `_`; names start with a letter or digit".into(),
            format!("try `{}`", suggest(name)),
        );
    }
    if name.len() > MAX_NAME_LEN {
        return problem(
            format!(
                "is {} characters long; the limit is {MAX_NAME_LEN}",
                name.len()
            ),
            format!("shorten it, for example to `{}`", suggest(name)),
        );
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return problem(
            "contains uppercase letters".into(),
            format!("use `{}`", suggest(name)),
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return problem(
            format!("contains `{}`", c.escape_default()),
            format!("{rule}; try `{}`", suggest(name)),
        );
    }
    Ok(())
}

/// A valid name close to `name`: lowercased, look-alikes replaced, `_` kept, other
/// characters turned into `-`, trimmed and shortened.
pub fn suggest(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = lookalike(c).unwrap_or(c).to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || (c == '_' && !out.is_empty()) {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out = out.trim_matches(['-', '_']).to_owned();
    out.truncate(MAX_NAME_LEN);
    let out = out.trim_end_matches(['-', '_']).to_owned();
    if out.is_empty() { "task".into() } else { out }
}

fn unicode_escape(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Common non-ASCII characters that render like ASCII letters and digits
/// (Cyrillic, Greek, fullwidth forms, dashes). Not exhaustive: every non-ASCII
/// character is rejected anyway; this only makes the message helpful.
fn lookalike(c: char) -> Option<char> {
    let ascii = match c {
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ο' => 'o',
        'ν' => 'v',
        'α' => 'a',
        'ι' => 'i',
        'κ' => 'k',
        'τ' => 't',
        'ϲ' => 'c',
        'ı' => 'i',
        '‐' | '‑' | '‒' | '–' | '—' | '−' => '-',
        '\u{FF10}'..='\u{FF19}' => char::from(b'0' + (u32::from(c) - 0xFF10) as u8),
        '\u{FF41}'..='\u{FF5A}' => char::from(b'a' + (u32::from(c) - 0xFF41) as u8),
        '\u{FF21}'..='\u{FF3A}' => char::from(b'A' + (u32::from(c) - 0xFF21) as u8),
        _ => return None,
    };
    Some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for name in [
            "a",
            "define-types",
            "x1",
            "0",
            "rust_build",
            "rust_fmt_check",
            "a_-b",
            &"a".repeat(63),
        ] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_unsafe_names_with_reasons() {
        let cases = [
            ("", "empty"),
            ("..", "`..`"),
            ("a/b", "path separator"),
            ("-a", "starts with `-`"),
            ("Auth", "uppercase"),
            ("_a", "starts with `_`"),
            ("a.b", "`.`"),
            ("a b", "` `"),
            ("dеfine", "look-alike of `e`"),
        ];
        for (name, expected) in cases {
            let problem = check(name).expect_err(name);
            assert!(problem.reason.contains(expected), "{name}: {problem:?}");
        }
        assert!(check(&"a".repeat(64)).is_err());
    }

    #[test]
    fn suggestions_are_valid_names() {
        for name in [
            "Auth",
            "a_b",
            "_x_",
            "-x-",
            "dеfine",
            "ＡＢ",
            "___",
            &"b".repeat(80),
        ] {
            let s = suggest(name);
            assert_eq!(check(&s), Ok(()), "{name} -> {s}");
        }
        assert_eq!(suggest("dеfine Types"), "define-types");
        assert_eq!(suggest("Rust_Build"), "rust_build");
    }

    #[test]
    fn names_with_underscores_stay_safe_where_names_are_joined() {
        use crate::agent::token::{Secret, Token};
        let secret = Secret::from_bytes(vec![7; 32]);
        for (plan, task) in [("gator_serve", "rust_build"), ("a_", "b_-c"), ("x", "_y")] {
            if check(plan).is_err() || check(task).is_err() {
                assert_eq!(task, "_y", "only the leading `_` is refused");
                continue;
            }
            let branch = format!("converge/{plan}/{task}");
            assert_eq!(crate::spec::config::check_branch_name(&branch), Ok(()));
            let token = secret.mint(plan, task, 2);
            let parsed = Token::parse(&token).expect("parses");
            assert_eq!((parsed.plan, parsed.task, parsed.attempt), (plan, task, 2));
            assert!(secret.verify(&token, plan, task, 2).is_ok());
        }
    }
}
