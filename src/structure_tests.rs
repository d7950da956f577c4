//! The structure the code keeps, held by tests:
//! - docs/architecture.md's code map against the tree: every source file is
//!   named in the section of its top-level module, and every file the map
//!   names exists there. A move that forgets the map fails here.
//! - sizes: no source file over [`MAX_FILE_LINES`] lines before its test
//!   module, no function over [`MAX_FN_LINES`] lines (rustfmt's layout: a
//!   function ends at the first `}` at its own indentation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The code map's sections: `src/<module>/` (or `src/<file>.rs`) → its text.
fn sections(doc: &str) -> BTreeMap<String, String> {
    let start = doc
        .find("## Code map")
        .expect("docs/architecture.md has a code map");
    let rest = &doc[start..];
    let block = rest
        .split("```")
        .nth(1)
        .expect("the code map is a fenced block");
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in block.lines() {
        if let Some(word) = line
            .split_whitespace()
            .next()
            .filter(|_| !line.starts_with(' '))
        {
            current = word.starts_with("src/").then(|| word.to_owned());
        }
        if let Some(key) = &current {
            let text = out.entry(key.clone()).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// Every `.rs` file under `dir`, relative to it, test modules included.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel)).expect("read dir") {
            let entry = entry.expect("entry");
            let path = rel.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The source files under `dir`, relative to it, without test modules.
fn sources(dir: &Path) -> Vec<PathBuf> {
    rust_files(dir)
        .into_iter()
        .filter(|path| {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            name != "tests.rs" && !name.ends_with("_tests.rs") && name != "testing.rs"
        })
        .collect()
}

/// The names of every `.rs` file under `dir`, test modules included.
fn files(dir: &Path) -> Vec<String> {
    rust_files(dir)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

/// Whether `word` stands in `text` as a whole name (not inside a longer one).
fn names(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        edge(before) && edge(after)
    })
}

#[test]
fn the_code_map_names_every_source_file_and_only_real_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("read doc");
    let map = sections(&doc);
    let src = root.join("src");
    let mut missing = Vec::new();
    for file in sources(&src) {
        let parts: Vec<String> = file
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 {
            let key = format!("src/{}", parts[0]);
            if !map.contains_key(&key) && !map.contains_key(&key.replace(".rs", "/")) {
                missing.push(key);
            }
            continue;
        }
        let key = format!("src/{}/", parts[0]);
        let Some(text) = map.get(&key) else {
            missing.push(format!("{} (no section {key})", file.display()));
            continue;
        };
        let inner = &parts[1..];
        let leaf = &inner[inner.len() - 1];
        if parts[0] == "cli" && leaf.starts_with("cmd_") && names(text, "cmd_<name>.rs") {
            continue;
        }
        if leaf == "mod.rs" {
            // A directory's mod.rs is named by naming the directory.
            let dirs = &inner[..inner.len() - 1];
            if dirs.iter().all(|d| names(text, &format!("{d}/"))) {
                continue;
            }
        } else if names(text, leaf)
            && inner[..inner.len() - 1]
                .iter()
                .all(|d| names(text, &format!("{d}/")) || names(text, &format!("{d}.rs")))
        {
            continue;
        }
        missing.push(format!("src/{}", file.display()));
    }
    let mut unknown = Vec::new();
    for (key, text) in &map {
        let Some(dir) = key.strip_suffix('/') else {
            if !root.join(key).is_file() {
                unknown.push(key.clone());
            }
            continue;
        };
        let here: Vec<String> = sources(&root.join(dir))
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let all = files(&root.join(dir));
        for word in text.split(|c: char| c.is_whitespace() || "(),;:`".contains(c)) {
            let word = word.trim_end_matches('.');
            let Some(name) = word.rsplit('/').next().filter(|w| w.ends_with(".rs")) else {
                continue;
            };
            // `cmd_<name>.rs` stands for a pattern; a path with a directory may
            // point into another module (`spec/base.rs`), and test modules are
            // named where they matter.
            if word.contains('<')
                || (word.contains('/') && src.join(word).is_file())
                || all.iter().any(|h| h == name)
            {
                continue;
            }
            if !here.iter().any(|h| h == name) && !unknown.contains(&format!("{key}: {name}")) {
                unknown.push(format!("{key}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/architecture.md's code map is out of date\nfiles it does not name:\n  {}\nfiles it names that do not exist:\n  {}",
        missing.join("\n  "),
        unknown.join("\n  ")
    );
}

/// Lines a source file may have before its test module.
const MAX_FILE_LINES: usize = 600;
/// Lines a function may have, signature and closing brace included.
const MAX_FN_LINES: usize = 120;

/// The lines of `text` before its `#[cfg(test)]` module, if it has one at
/// the top level.
fn before_tests(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .collect()
}

/// `(name, first line (1-based), length)` of every function in `lines`.
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let mut words = line.split_whitespace().peekable();
        while words
            .peek()
            .is_some_and(|w| w.starts_with("pub") || ["const", "async", "unsafe"].contains(w))
        {
            words.next();
        }
        if words.next() != Some("fn") {
            continue;
        }
        let Some(name) = words
            .next()
            .map(|w| w.split(['(', '<']).next().unwrap_or(w).to_owned())
        else {
            continue;
        };
        // A declaration without a body (in a trait) ends on its own line.
        if line.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[at + 1..].iter().position(|l| *l == close) {
            out.push((name, at + 1, end + 2));
        }
    }
    out
}

#[test]
fn no_source_file_or_function_outgrows_its_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut over = Vec::new();
    for file in sources(&src) {
        let text = std::fs::read_to_string(src.join(&file)).expect("read source");
        let lines = before_tests(&text);
        if lines.len() > MAX_FILE_LINES {
            over.push(format!(
                "src/{}: {} lines before its tests (at most {MAX_FILE_LINES})",
                file.display(),
                lines.len()
            ));
        }
        for (name, at, length) in functions(&lines) {
            if length > MAX_FN_LINES {
                over.push(format!(
                    "src/{}:{at}: fn {name} is {length} lines (at most {MAX_FN_LINES})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        over.is_empty(),
        "split these along a seam (docs/architecture.md, Layers):\n  {}",
        over.join("\n  ")
    );
}

#[test]
fn the_size_check_finds_functions_as_rustfmt_lays_them_out() {
    let text = "pub(crate) fn a(\n    x: u8,\n) -> u8 {\n    x\n}\n\nimpl T {\n    pub async fn b<T>(&self) {\n        let _ = 1;\n    }\n    fn c(&self);\n}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
    let lines = before_tests(text);
    assert_eq!(lines.len(), 12);
    assert_eq!(
        functions(&lines),
        [("a".to_owned(), 1, 5), ("b".to_owned(), 8, 3)]
    );
}
