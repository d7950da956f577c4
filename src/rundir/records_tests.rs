use super::*;

fn lease() -> Lease {
    Lease {
        pid: 42,
        start_ticks: Some(7),
        started_at: Timestamp::from_unix(1_000),
        deadline: Timestamp::from_unix(2_000),
        fork: Some("f".repeat(40).parse().expect("hex")),
        generation: "g".into(),
        harness: "sim".into(),
        agent_pid: None,
    }
}

fn exit() -> ExitRecord {
    ExitRecord {
        exit_code: Some(0),
        signal: None,
        ended_at: Timestamp::from_unix(1_500),
        timed_out: false,
        spawn_error: None,
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn lease_and_exit_round_trip_atomically_and_leave_no_temporary_file() {
    let dir = tempfile::tempdir().expect("dir");
    let run = dir.path().join("runs/p/a/1");
    assert_eq!(read_lease(&run).expect("missing is fine"), None);
    assert_eq!(read_exit(&run).expect("missing is fine"), None);

    let mut l = lease();
    write_lease(&run, &l).expect("write");
    assert_eq!(read_lease(&run).expect("read"), Some(l.clone()));
    l.agent_pid = Some(43);
    write_lease(&run, &l).expect("replace");
    assert_eq!(read_lease(&run).expect("read"), Some(l));
    write_exit(&run, &exit()).expect("write");
    assert_eq!(read_exit(&run).expect("read"), Some(exit()));
    assert_eq!(names(&run), ["exit.json", "lease.json"]);
}

#[test]
fn records_keep_their_format() {
    // The bytes other versions of converge (and the kill and crash tests) read.
    let dir = tempfile::tempdir().expect("dir");
    write_exit(dir.path(), &exit()).expect("write");
    assert_eq!(
        std::fs::read_to_string(layout::exit(dir.path())).expect("read"),
        "{\n  \"exit_code\": 0,\n  \"signal\": null,\n  \"ended_at\": \"1970-01-01T00:25:00Z\",\n  \"timed_out\": false\n}"
    );
    write_lease(dir.path(), &lease()).expect("write");
    let text = std::fs::read_to_string(layout::lease(dir.path())).expect("read");
    assert!(
        text.starts_with("{\n  \"pid\": 42,\n  \"start_ticks\": 7,"),
        "{text}"
    );
    assert!(!text.contains("agent_pid"), "{text}");
    // An older exit record without the optional fields still reads.
    std::fs::write(
        layout::exit(dir.path()),
        r#"{"exit_code":1,"signal":null,"ended_at":"2026-01-01T00:00:00Z"}"#,
    )
    .expect("write");
    let old = read_exit(dir.path()).expect("read").expect("some");
    assert_eq!((old.exit_code, old.timed_out), (Some(1), false));
}

#[test]
fn a_corrupt_record_names_its_file_and_what_it_should_be() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(layout::lease(dir.path()), "{not json").expect("write");
    let error = read_lease(dir.path()).expect_err("corrupt");
    assert!(matches!(error, RunError::Parse { .. }));
    assert!(
        error
            .to_string()
            .contains("lease.json is not a valid run record: "),
        "{error}"
    );
    std::fs::write(layout::brief(dir.path()), "[]").expect("write");
    let error = Brief::read(dir.path()).expect_err("corrupt");
    assert!(
        error
            .to_string()
            .contains("brief.json is not a valid brief: "),
        "{error}"
    );
}

#[test]
fn a_brief_round_trips_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let error = Brief::read(dir.path()).expect_err("missing");
    assert!(matches!(error, RunError::Read { .. }), "{error}");
    let brief = Brief {
        task: "p/a".into(),
        attempt: 2,
        invariants: Vec::new(),
        sim: None,
        planner: None,
    };
    write_file(
        &layout::brief(dir.path()),
        &serde_json::to_vec_pretty(&brief).expect("json"),
    )
    .expect("write");
    assert_eq!(Brief::read(dir.path()).expect("read"), brief);
    assert_eq!(names(dir.path()), ["brief.json"]);
}

#[test]
fn events_are_appended_one_line_each_and_read_back_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    assert_eq!(read_events(dir.path()).expect("none yet"), Vec::new());
    let event = |kind: &str, message: Option<&str>| Event {
        kind: kind.into(),
        token: "t".into(),
        message: message.map(str::to_owned),
        at: None,
    };
    append_event(dir.path(), &event("progress", Some("half way"))).expect("append");
    std::fs::OpenOptions::new()
        .append(true)
        .open(layout::events(dir.path()))
        .and_then(|mut f| f.write_all(b"\nnot json\n"))
        .expect("append garbage");
    append_event(dir.path(), &event("done", None)).expect("append");
    assert_eq!(
        std::fs::read_to_string(layout::events(dir.path())).expect("read"),
        "{\"type\":\"progress\",\"token\":\"t\",\"message\":\"half way\"}\n\nnot json\n{\"type\":\"done\",\"token\":\"t\"}\n"
    );
    assert_eq!(
        read_events(dir.path()).expect("read"),
        [
            Some(event("progress", Some("half way"))),
            None,
            Some(event("done", None))
        ]
    );
    assert_eq!(
        parse_event("{\"type\":\"done\",\"token\":\"t\"}"),
        Some(event("done", None))
    );
    assert_eq!(parse_event("nope"), None);
}

#[test]
fn the_fork_marker_round_trips() {
    let dir = tempfile::tempdir().expect("dir");
    let layout = Layout::new(dir.path());
    let key = TaskKey::new("p", "a");
    assert_eq!(read_fork(&layout, &key), None);
    let a: CommitId = "a".repeat(40).parse().expect("hex");
    write_fork(&layout, &key, a).expect("write");
    assert_eq!(read_fork(&layout, &key), Some(a));
    assert_eq!(
        std::fs::read(layout.fork_marker(&key)).expect("read"),
        "a".repeat(40).as_bytes()
    );
    // Notes as they were always written, or by `echo`, read the same.
    let marker = layout.fork_marker(&key);
    std::fs::write(&marker, format!("{}\n", "a".repeat(40))).expect("write");
    assert_eq!(read_fork(&layout, &key), Some(a));
    std::fs::write(&marker, " \n").expect("write");
    assert_eq!(read_fork(&layout, &key), None, "blank is no fork");
    std::fs::write(&marker, "not-a-commit").expect("write");
    assert_eq!(read_fork(&layout, &key), None, "text that is no commit id");
    assert_eq!(names(&layout.root().join("forks/p")), ["a"]);
}

#[test]
fn the_forge_merge_note_round_trips_and_reads_garbage_as_none() {
    let dir = tempfile::tempdir().expect("dir");
    let layout = Layout::new(dir.path());
    let key = TaskKey::new("p", "a");
    assert_eq!(read_forge_merge(&layout, &key), None);
    let c: CommitId = "c".repeat(40).parse().expect("hex");
    write_forge_merge(&layout, &key, c).expect("write");
    assert_eq!(read_forge_merge(&layout, &key), Some(c));
    let note = layout.forge_merge_note(&key);
    assert_eq!(
        std::fs::read(&note).expect("read"),
        "c".repeat(40).as_bytes()
    );
    std::fs::write(&note, format!("{}\n", "c".repeat(40))).expect("write");
    assert_eq!(read_forge_merge(&layout, &key), Some(c));
    std::fs::write(&note, "merged").expect("write");
    assert_eq!(read_forge_merge(&layout, &key), None);
}

#[test]
fn the_fork_note_wins_over_the_lease() {
    let dir = tempfile::tempdir().expect("dir");
    let layout = Layout::new(dir.path());
    let key = TaskKey::new("p", "a");
    let (noted, leased): (CommitId, CommitId) = (
        "a".repeat(40).parse().expect("hex"),
        "b".repeat(40).parse().expect("hex"),
    );
    assert_eq!(attempt_fork(&layout, &key, None), None);
    assert_eq!(attempt_fork(&layout, &key, Some(leased)), Some(leased));
    write_fork(&layout, &key, noted).expect("write");
    assert_eq!(attempt_fork(&layout, &key, Some(leased)), Some(noted));
    assert_eq!(attempt_fork(&layout, &key, None), Some(noted));
}

#[test]
fn a_lease_reads_its_fork_as_it_was_always_written() {
    let dir = tempfile::tempdir().expect("dir");
    let text = |fork: &str| {
        format!(
            "{{\n  \"pid\": 42,\n  \"start_ticks\": 7,\n  \"started_at\": \"1970-01-01T00:16:40Z\",\n  \"deadline\": \"1970-01-01T00:33:20Z\",\n  \"fork\": {fork},\n  \"generation\": \"g\",\n  \"harness\": \"sim\"\n}}"
        )
    };
    // The bytes a lease has always had, read and written back the same.
    let old = text(&format!("\"{}\"", "f".repeat(40)));
    std::fs::write(layout::lease(dir.path()), &old).expect("write");
    assert_eq!(read_lease(dir.path()).expect("read"), Some(lease()));
    write_lease(dir.path(), &lease()).expect("write");
    assert_eq!(
        std::fs::read_to_string(layout::lease(dir.path())).expect("read"),
        old
    );
    // A fork that is no commit id is no fork; the rest of the lease reads.
    std::fs::write(layout::lease(dir.path()), text("\"not-a-commit\"")).expect("write");
    let damaged = read_lease(dir.path()).expect("read").expect("some");
    assert_eq!(
        damaged,
        Lease {
            fork: None,
            ..lease()
        }
    );
    // A lease without a fork, or with a fork of another type, is not a lease.
    std::fs::write(layout::lease(dir.path()), text("3")).expect("write");
    assert!(read_lease(dir.path()).is_err());
    std::fs::write(
        layout::lease(dir.path()),
        r#"{"pid":42,"start_ticks":7,"started_at":"1970-01-01T00:16:40Z","deadline":"1970-01-01T00:33:20Z","generation":"g","harness":"sim"}"#,
    )
    .expect("write");
    assert!(read_lease(dir.path()).is_err());
}

#[test]
fn the_newest_attempt_of_each_task_is_found() {
    let common = tempfile::tempdir().expect("dir");
    let layout = Layout::new(common.path());
    for (plan, task, attempt) in [
        ("p", "a", 1),
        ("p", "a", 10),
        ("p", "a", 2),
        ("p", "b", 1),
        ("q", "c", 3),
    ] {
        std::fs::create_dir_all(layout.run(&TaskKey::new(plan, task), attempt)).expect("mkdir");
    }
    let found: Vec<(String, u32)> = latest_attempts(&layout)
        .expect("reads")
        .into_iter()
        .map(|(k, a, _)| (k.to_string(), a))
        .collect();
    assert_eq!(
        found,
        [
            ("p/a".to_owned(), 10),
            ("p/b".to_owned(), 1),
            ("q/c".to_owned(), 3)
        ]
    );
}
