//! `paths` globs: which files a task may change.

use toml::Spanned;

use super::diag::Code;
use super::toml_walk::Ctx;

/// Paths agents may never change, whatever a task's `paths` say: policy,
/// CI, git's own directory, and converge's (the default worktree root: a file
/// merged there would land in another task's live worktree).
pub const PROTECTED: &[&str] = &["planning/", ".github/", ".git/", ".converge/"];

/// Files agents may not change unless `[merge] protect_git_files = false`:
/// they change how git checks out and merges everything else (filters and
/// merge drivers, submodule URLs), at any depth.
pub const GIT_FILES: &[&str] = &[".gitattributes", ".gitmodules"];

/// Whether agents may not change `path` (a path of the tree, `/`-separated).
pub fn is_protected(path: &str, protect_git_files: bool) -> bool {
    if PROTECTED.iter().any(|p| path.starts_with(p)) {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    protect_git_files && GIT_FILES.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// Why a `paths` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathProblem {
    pub code: Code,
    /// Completes "`<pattern>` in `paths` of <what> ...".
    pub reason: String,
    pub hint: &'static str,
}

const RELATIVE_HINT: &str =
    "write a glob relative to the repository root, for example `src/auth/**`";

/// Checks one `paths` entry: a relative glob that stays inside the repository and
/// does not reach into a protected path.
pub fn problem(p: &str) -> Option<PathProblem> {
    let escape = |reason: &str| {
        Some(PathProblem {
            code: Code::PathEscapes,
            reason: reason.to_owned(),
            hint: RELATIVE_HINT,
        })
    };
    if p.is_empty() {
        return escape("is empty");
    }
    if p.starts_with('/') || p.starts_with('\\') || p.starts_with('~') || has_drive_prefix(p) {
        return escape("is an absolute path");
    }
    if p.contains('\\') {
        return escape("uses `\\`; paths are written with `/`");
    }
    if p.split('/').any(|segment| segment == "..") {
        return escape("leaves the repository through `..`");
    }
    if p.chars().any(char::is_control) {
        return escape("contains a control character");
    }
    if let Err(error) = globset::Glob::new(p) {
        return Some(PathProblem {
            code: Code::InvalidGlob,
            reason: format!("is not a valid glob: {}", error.kind()),
            hint: "globs use `*`, `**`, `?`, `[abc]` and `{a,b}`; escape a literal with `[*]`",
        });
    }
    let normalized = p.trim_start_matches("./");
    let protected = PROTECTED.iter().find(|prefix| {
        normalized.starts_with(*prefix) || normalized == prefix.trim_end_matches('/')
    })?;
    Some(PathProblem {
        code: Code::ProtectedPath,
        reason: format!("is inside `{protected}`, which agents may never change"),
        hint: "planning/, .github/, .git/ and .converge/ are changed by people and converge only; remove this entry",
    })
}

/// [`problem`] for a TOML value: records a diagnostic and returns false when refused.
pub(crate) fn check(ctx: &mut Ctx<'_>, pattern: &Spanned<String>, what: &str) -> bool {
    let Some(problem) = problem(pattern.get_ref()) else {
        return true;
    };
    ctx.error(
        problem.code,
        pattern.span(),
        format!(
            "`{}` in `paths` of {what} {}",
            pattern.get_ref(),
            problem.reason
        ),
    )
    .hint = Some(problem.hint.into());
    false
}

fn has_drive_prefix(p: &str) -> bool {
    let bytes = p.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::toml_walk::SourceFile;

    fn codes(pattern: &str) -> Vec<Code> {
        let file = SourceFile {
            path: "x".into(),
            text: pattern.into(),
        };
        let mut ctx = Ctx::new(&file);
        check(
            &mut ctx,
            &Spanned::new(0..pattern.len(), pattern.to_owned()),
            "task `t`",
        );
        ctx.diags.iter().map(|d| d.code).collect()
    }

    #[test]
    fn accepts_relative_globs() {
        for ok in [
            "src/**",
            "src/auth/*.rs",
            "README.md",
            "./docs/**",
            "{a,b}/*",
        ] {
            assert!(codes(ok).is_empty(), "{ok}");
        }
    }

    #[test]
    fn rejects_escapes_bad_globs_and_protected_paths() {
        for bad in [
            "/etc/passwd",
            "../x",
            "src/../../x",
            "~/x",
            "C:/x",
            "a\\b",
            "",
        ] {
            assert_eq!(codes(bad), [Code::PathEscapes], "{bad}");
        }
        assert_eq!(codes("src/[a"), [Code::InvalidGlob]);
        assert_eq!(codes("planning/**"), [Code::ProtectedPath]);
        assert_eq!(codes(".github/workflows/x.yml"), [Code::ProtectedPath]);
    }
}
