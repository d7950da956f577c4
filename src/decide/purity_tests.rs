//! The pure layers do no IO and read no clock: every file listed in [`PURE`]
//! is read, its `use` trees and paths resolved, and a path into a module that
//! does IO fails the test. A listed file that is missing fails it too (a move
//! must update the list, not silently drop a file from the check).
//!
//! A failure means a side effect crept into a pure layer: move it to `act/`,
//! `observe/` or `runtime/`, and pass its result in.

use std::path::Path;

/// The files of the pure layers, relative to the crate root. A directory (ending
/// in `/`) stands for every `.rs` file in it but test modules (`tests.rs`,
/// `*_tests.rs`). `clock`: whether the file may read the clock (only the clock's
/// own home).
const PURE: &[(&str, Clock)] = &[
    ("src/decide/", Clock::Forbidden),
    ("src/model/", Clock::Forbidden),
    ("src/status/model.rs", Clock::Forbidden),
    ("src/status/transition.rs", Clock::Forbidden),
    ("src/view/", Clock::Forbidden),
    ("src/spec/edit.rs", Clock::Forbidden),
    ("src/rundir/layout.rs", Clock::Forbidden),
    ("src/runtime/schedule/due.rs", Clock::Forbidden),
    ("src/runtime/autonomy/decide.rs", Clock::Forbidden),
    ("src/runtime/autonomy/state.rs", Clock::Forbidden),
    ("src/runtime/autonomy/view.rs", Clock::Forbidden),
    ("src/runtime/autonomy/prompt.rs", Clock::Forbidden),
    ("src/harness/context.rs", Clock::Forbidden),
    ("src/harness/stream.rs", Clock::Forbidden),
    ("src/harness/outcome.rs", Clock::Forbidden),
    ("src/harness/prices.rs", Clock::Forbidden),
    ("src/time.rs", Clock::Allowed),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    Forbidden,
    Allowed,
}

/// Modules that do IO (or are the layers above): a path that starts with one of
/// these is refused in a pure file, unless it leads into a file listed in
/// [`PURE`] (which is checked itself).
const IO: &[&str] = &[
    "std::fs",
    "std::process",
    "std::net",
    "std::env",
    "std::io",
    "std::thread",
    "std::os",
    "gix",
    "tokio",
    "crate::git",
    "crate::act",
    "crate::runtime",
    "crate::harness",
    "crate::agent",
    "crate::cli",
    "crate::intent",
    "crate::crash",
    "crate::observe::observe",
    "crate::observe::runs",
    "crate::status::load",
    "crate::status::record",
];

/// Reading the clock: refused where a path contains one of these.
const CLOCK: &[&str] = &[
    "std::time::SystemTime",
    "std::time::Instant",
    "Timestamp::now",
];

#[test]
fn the_pure_layers_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut found = Vec::new();
    let pure: Vec<Vec<String>> = PURE
        .iter()
        .flat_map(|(entry, _)| files_of(root, entry))
        .map(|file| module_of(&file))
        .collect();
    for (entry, clock) in PURE {
        for file in files_of(root, entry) {
            let source = std::fs::read_to_string(root.join(&file))
                .unwrap_or_else(|e| panic!("{file} is listed as pure but cannot be read: {e}"));
            for path in impure_paths(&file, &source, *clock, &pure) {
                found.push(format!("{file} uses `{path}`"));
            }
            checked += 1;
        }
    }
    assert!(checked >= PURE.len(), "checked {checked} files");
    assert!(
        found.is_empty(),
        "side effects in pure layers:\n{}",
        found.join("\n")
    );
}

/// The files an entry of [`PURE`] stands for; panics when it names nothing.
fn files_of(root: &Path, entry: &str) -> Vec<String> {
    let Some(dir) = entry.strip_suffix('/') else {
        assert!(
            root.join(entry).is_file(),
            "{entry} is listed as pure but does not exist"
        );
        return vec![entry.to_owned()];
    };
    let listing = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("{entry} is listed as pure but cannot be read: {e}"));
    let mut files: Vec<String> = listing
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs"))
        .map(|name| format!("{entry}{name}"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{entry} is listed as pure but holds no source file"
    );
    files
}

/// The paths in `source` (the file at `file`) that do IO or, unless `clock`
/// allows it, read the clock; a path into a module of `pure` does no IO.
/// Comments, strings and `#[cfg(test)]` items are not looked at.
fn impure_paths(file: &str, source: &str, clock: Clock, pure: &[Vec<String>]) -> Vec<String> {
    let tokens = without_test_items(&lex(source));
    let module = module_of(file);
    let mut out = Vec::new();
    for path in paths(&tokens) {
        let path = resolve(&path, &module);
        let joined = path.join("::");
        let into_pure = pure.iter().any(|m| path.starts_with(m));
        let io = !into_pure && IO.iter().any(|io| starts_with(&path, io));
        let clock_read = clock == Clock::Forbidden && CLOCK.iter().any(|c| contains(&path, c));
        if (io || clock_read) && !out.contains(&joined) {
            out.push(joined);
        }
    }
    out
}

fn segments(text: &str) -> Vec<&str> {
    text.split("::").collect()
}

fn starts_with(path: &[String], prefix: &str) -> bool {
    let prefix = segments(prefix);
    path.len() >= prefix.len() && path.iter().zip(&prefix).all(|(a, b)| a == b)
}

fn contains(path: &[String], part: &str) -> bool {
    let part = segments(part);
    path.windows(part.len())
        .any(|w| w.iter().zip(&part).all(|(a, b)| a == b))
}

/// `src/decide/derive.rs` → `crate::decide::derive`; `mod.rs` is its directory.
fn module_of(file: &str) -> Vec<String> {
    let inner = file.strip_prefix("src/").unwrap_or(file);
    let inner = inner.strip_suffix(".rs").unwrap_or(inner);
    let mut module = vec!["crate".to_owned()];
    module.extend(
        inner
            .split('/')
            .filter(|s| *s != "mod" && *s != "lib")
            .map(str::to_owned),
    );
    module
}

/// Makes `path` absolute: `super` and `self` from `module`; `::x` and other
/// first segments are taken as written (crates, or names `use` brought in,
/// whose `use` is checked itself).
fn resolve(path: &[String], module: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("self") => {
            out = module.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            out = module.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                out.pop();
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    out.extend(rest.iter().cloned());
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// Identifiers, `::` and punctuation of Rust source; comments, string, char and
/// number literals and lifetimes are dropped.
fn lex(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i);
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
            i = raw_string_start(&chars, i)
                .map_or(i + 1, |(hashes, at)| skip_raw(&chars, at, hashes));
        } else if c == 'b' && next == Some('"') {
            i = skip_string(&chars, i + 2);
        } else if c == '\'' {
            i = skip_quote(&chars, i);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            tokens.push(Token::Sep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    tokens
}

fn skip_block_comment(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// From just after an opening `"` to just after the closing one.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// `r"`, `r#"`, `br##"`: the number of `#` and where the content starts.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    (chars.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes + 1))
}

fn skip_raw(chars: &[char], mut i: usize, hashes: usize) -> usize {
    while i < chars.len() {
        if chars[i] == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// A char literal (`'x'`, `'\n'`, `'\u{..}'`) or a lifetime (`'a`).
fn skip_quote(chars: &[char], i: usize) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        let mut j = i + 2;
        while j < chars.len() && chars[j] != '\'' {
            j += 1;
        }
        return j + 1;
    }
    if chars.get(i + 2) == Some(&'\'') {
        return i + 3;
    }
    // A lifetime: skip the quote; its name is an identifier of no interest.
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    j
}

/// `tokens` without the items marked `#[cfg(test)]`.
fn without_test_items(tokens: &[Token]) -> Vec<Token> {
    let ident = |s: &str| Token::Ident(s.to_owned());
    let marker = [
        Token::Punct('#'),
        Token::Punct('['),
        ident("cfg"),
        Token::Punct('('),
        ident("test"),
        Token::Punct(')'),
        Token::Punct(']'),
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i..].starts_with(&marker) {
            i = end_of_item(tokens, i + marker.len());
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

/// The index after the item starting at `i`: its `;` or its closing `}`.
fn end_of_item(tokens: &[Token], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < tokens.len() {
        match tokens[i] {
            Token::Punct(';') if depth == 0 => return i + 1,
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Every path in `tokens`: those `use` brings in (trees expanded) and those
/// written in code (`a::b::c`).
fn paths(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == Token::Ident("use".to_owned()) {
            i = use_tree(tokens, i + 1, &[], &mut out);
            continue;
        }
        let leading = tokens[i] == Token::Sep;
        let start = if leading { i + 1 } else { i };
        let mut path = Vec::new();
        let mut j = start;
        while let Some(Token::Ident(name)) = tokens.get(j) {
            path.push(name.clone());
            if tokens.get(j + 1) != Some(&Token::Sep) {
                break;
            }
            j += 2;
        }
        if path.len() > 1 || (leading && !path.is_empty()) {
            out.push(path);
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Parses a `use` tree at `i` under `prefix`, pushing each full path; returns
/// the index after it (after `;` at the top, at `,` or `}` inside braces).
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix.to_vec();
    if tokens.get(i) == Some(&Token::Sep) {
        i += 1;
    }
    loop {
        match tokens.get(i) {
            Some(Token::Ident(name)) if name == "as" => {
                i += 2;
            }
            Some(Token::Ident(name)) => {
                path.push(name.clone());
                i += 1;
            }
            Some(Token::Sep) => i += 1,
            Some(Token::Punct('*')) => {
                out.push(path.clone());
                i += 1;
            }
            Some(Token::Punct('{')) => {
                i += 1;
                while !matches!(tokens.get(i), Some(Token::Punct('}')) | None) {
                    i = use_tree(tokens, i, &path, out);
                    if tokens.get(i) == Some(&Token::Punct(',')) {
                        i += 1;
                    }
                }
                i += 1;
                path.clear();
            }
            Some(Token::Punct(';')) => {
                if !path.is_empty() {
                    out.push(path);
                }
                return i + 1;
            }
            Some(Token::Punct(',' | '}')) | None => {
                if !path.is_empty() {
                    out.push(path);
                }
                return i;
            }
            Some(Token::Punct(_)) => i += 1,
        }
    }
}

#[test]
fn the_check_sees_through_use_trees_relative_paths_and_literals() {
    let cases: &[(&str, &str, Clock, &[&str])] = &[
        (
            "src/decide/x.rs",
            "use std::{collections::BTreeMap, fs, io::Write as _};",
            Clock::Forbidden,
            &["std::fs", "std::io::Write"],
        ),
        (
            "src/decide/x.rs",
            "fn f() { let _ = std::fs::read(\"a\"); }",
            Clock::Forbidden,
            &["std::fs::read"],
        ),
        (
            "src/decide/derive.rs",
            "use super::super::runtime::tick;\nuse super::Decision;",
            Clock::Forbidden,
            &["crate::runtime::tick"],
        ),
        (
            "src/decide/mod.rs",
            "use self::inner::x; use crate::{git::Repo as R, spec::Spec}; fn g() -> ::gix::ObjectId {}",
            Clock::Forbidden,
            &["crate::git::Repo", "gix::ObjectId"],
        ),
        (
            "src/decide/mod.rs",
            "// std::fs\n/* std::process /* nested */ crate::git */\nconst A: &str = \"std::env\";\nconst B: &str = r#\"gix \" crate::act\"#;\nconst C: char = '\"';",
            Clock::Forbidden,
            &[],
        ),
        (
            "src/decide/mod.rs",
            "fn f<'a>(x: &'a str) { let c = '{'; }\n#[cfg(test)]\nmod tests { use std::fs; fn t() { let c = '}'; } }\nfn g() { std::process::exit(1) }",
            Clock::Forbidden,
            &["std::process::exit"],
        ),
        (
            "src/status/model.rs",
            "#[cfg(test)]\nuse std::fs;\nfn now() -> Timestamp { Timestamp::now() }",
            Clock::Forbidden,
            &["Timestamp::now"],
        ),
        (
            "src/time.rs",
            "fn now() { std::time::SystemTime::now(); }",
            Clock::Allowed,
            &[],
        ),
        (
            "src/runtime/autonomy/view.rs",
            "use super::state::LoopState; use super::step::view_at;",
            Clock::Forbidden,
            &["crate::runtime::autonomy::step::view_at"],
        ),
    ];
    // A path into a pure file is pure.
    let pure = [module_of("src/runtime/autonomy/state.rs")];
    for (file, source, clock, want) in cases {
        assert_eq!(
            impure_paths(file, source, *clock, &pure),
            *want,
            "{file}: {source}"
        );
    }
}
