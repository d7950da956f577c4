use super::*;

/// The rows of the table under `## {section}` in docs/reconcile.md: the
/// backticked codes of each row's first cell, and its other cells.
fn table(section: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let doc = include_str!("../../docs/reconcile.md");
    let start = doc
        .find(&format!("\n## {section}\n"))
        .unwrap_or_else(|| panic!("docs/reconcile.md has no section `{section}`"));
    let body = &doc[start + 1..];
    let body = &body[..body[3..].find("\n## ").map_or(body.len(), |end| end + 3)];
    body.lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            let codes = cells[0]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect();
            (codes, cells[1..].to_vec())
        })
        .collect()
}

#[test]
fn the_failure_code_table_lists_every_code_in_order() {
    let documented: Vec<String> = table("Failure codes")
        .into_iter()
        .flat_map(|(codes, _)| codes)
        .collect();
    let known: Vec<String> = FailureCode::ALL.iter().map(|c| c.to_string()).collect();
    for code in &known {
        assert!(
            documented.contains(code),
            "docs/reconcile.md does not document failure code `{code}`"
        );
    }
    for code in &documented {
        assert!(
            code.parse::<FailureCode>().is_ok(),
            "docs/reconcile.md documents `{code}`, which is not a FailureCode"
        );
    }
    assert_eq!(documented, known, "the order of FailureCode::ALL");
}

#[test]
fn the_condition_table_lists_every_type_with_its_reason() {
    let documented: Vec<(String, String)> = table("Conditions")
        .into_iter()
        .map(|(types, rest)| (types.join(","), rest[0].trim_matches('`').to_owned()))
        .collect();
    let known: Vec<(String, String)> = ConditionKind::ALL
        .iter()
        .map(|k| (k.to_string(), k.reason().to_owned()))
        .collect();
    for kind in &known {
        assert!(
            documented.contains(kind),
            "docs/reconcile.md does not document condition {kind:?}"
        );
    }
    for (kind, _) in &documented {
        assert!(
            kind.parse::<ConditionKind>().is_ok(),
            "docs/reconcile.md documents `{kind}`, which is not a ConditionKind"
        );
    }
    assert_eq!(documented, known, "the order of ConditionKind::ALL");
}

/// Serde writes each code as `as_str` says, and reads it back; the vocabulary
/// macro's names and serde's renaming cannot drift apart.
#[test]
fn serde_names_are_the_codes() {
    fn check<T>(all: impl IntoIterator<Item = T>)
    where
        T: Serialize + for<'de> Deserialize<'de> + fmt::Display + FromStr + PartialEq + fmt::Debug,
        <T as FromStr>::Err: fmt::Debug,
    {
        for code in all {
            let json = serde_json::to_string(&code).expect("encodes");
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(serde_json::from_str::<T>(&json).expect("decodes"), code);
            assert_eq!(code.to_string().parse::<T>().expect("parses"), code);
        }
    }
    check(FailureCode::ALL.iter().copied());
    check(ConditionKind::ALL.iter().copied());
    check(EventKind::ALL.iter().copied());
    check(AttemptOutcome::all());
    assert_eq!(AttemptOutcome::all().count(), 3 + FailureCode::ALL.len());
}

#[test]
fn unknown_codes_are_refused_by_name() {
    assert_eq!(
        "crash".parse::<FailureCode>(),
        Err(UnknownCode {
            vocabulary: "failure code",
            code: "crash".into()
        })
    );
    assert!("actionFailed".parse::<ConditionKind>().is_err());
    assert!("tool_use".parse::<EventKind>().is_err());
    assert!(serde_json::from_str::<AttemptOutcome>("\"finished\"").is_err());
    assert_eq!(
        "no-done".parse::<AttemptOutcome>(),
        Ok(AttemptOutcome::Failed(FailureCode::NoDone))
    );
}

#[test]
fn the_autonomy_reason_codes_are_documented_in_order() {
    let doc = include_str!("../../docs/autonomy.md");
    let start = doc
        .find("\n## Reason codes\n")
        .expect("docs/autonomy.md has a `Reason codes` section");
    let documented: Vec<&str> = doc[start..]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let known: Vec<&str> = LoopCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(documented, known);
}
