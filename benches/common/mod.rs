//! What the benchmarks share: measuring commands in interleaved rounds under a
//! supervisor that reports wall time and peak RSS, a PRNG, and a generator of
//! repositories with long histories.

#![allow(dead_code)] // each bench uses a part

pub mod baseline;
pub mod workload;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Row {
    pub name: String,
    pub measured: Stats,
    pub baseline: Option<(&'static str, Stats)>,
    pub target: &'static str,
}

#[derive(Clone, Copy)]
pub struct Stats {
    pub median: Duration,
    pub max_rss_kib: u64,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A command to measure: its argv, what it reads on stdin, and a check of its
/// output (run once, on the warm-up run).
pub struct Cmd<'a> {
    argv: Vec<&'a str>,
    stdin: Option<&'a [u8]>,
    check: Box<dyn Fn(&str) + 'a>,
}

impl<'a> Cmd<'a> {
    pub fn new(argv: &[&'a str]) -> Self {
        Cmd {
            argv: argv.to_vec(),
            stdin: None,
            check: Box::new(|_| {}),
        }
    }

    pub fn stdin(mut self, input: &'a [u8]) -> Self {
        self.stdin = Some(input);
        self
    }

    pub fn check(mut self, check: impl Fn(&str) + 'a) -> Self {
        self.check = Box::new(check);
        self
    }
}

/// Runs each command once to warm up and check its output, then `runs` rounds in
/// which every command runs once, in turn, so that drift in the machine's speed
/// affects all of them alike. Returns medians and peak RSS, in `cmds` order.
pub fn measure(runs: usize, cwd: &Path, cmds: &[Cmd<'_>]) -> Vec<Stats> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); cmds.len()];
    let mut max_rss = vec![0u64; cmds.len()];
    for round in 0..=runs {
        for (i, cmd) in cmds.iter().enumerate() {
            let (elapsed, rss, output) = run_supervised(cwd, cmd, round == 0);
            if round == 0 {
                (cmd.check)(&output);
                continue;
            }
            times[i].push(elapsed);
            max_rss[i] = max_rss[i].max(rss);
        }
    }
    times
        .into_iter()
        .zip(max_rss)
        .map(|(mut t, rss)| {
            t.sort();
            Stats {
                median: t[t.len() / 2],
                max_rss_kib: rss,
            }
        })
        .collect()
}

/// One run under the supervisor: (wall time, peak RSS in KiB, output if captured).
pub fn run_supervised(cwd: &Path, cmd: &Cmd<'_>, capture: bool) -> (Duration, u64, String) {
    let me = std::env::current_exe().expect("current exe");
    // The warm-up run captures output to check it; timed runs send it to
    // /dev/null so no command is charged for a pipe the other does not fill.
    let mut child = Command::new(&me)
        .arg("--supervise")
        .arg(if capture { "capture" } else { "discard" })
        .args(&cmd.argv)
        .current_dir(cwd)
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("supervisor starts");
    if let Some(input) = cmd.stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(
        child.wait().expect("wait").success(),
        "{:?} failed",
        cmd.argv
    );
    // The supervisor's last line: "<nanos> <maxrss KiB>".
    let trimmed = out.trim_end();
    let (output, report) = trimmed.rsplit_once('\n').unwrap_or(("", trimmed));
    let mut fields = report.split_whitespace();
    let nanos: u64 = fields.next().and_then(|f| f.parse().ok()).expect("nanos");
    let rss: u64 = fields.next().and_then(|f| f.parse().ok()).expect("rss");
    (Duration::from_nanos(nanos), rss, output.to_owned())
}

/// Runs one command with inherited stdin and prints its wall time and peak RSS
/// (after its output when `capture`; its output goes to /dev/null otherwise).
pub fn supervise(capture: bool, argv: &[String]) {
    let started = Instant::now();
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::inherit())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .output()
        .expect("measured command starts");
    let elapsed = started.elapsed();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    if output.stdout.len() < 4096 {
        lock.write_all(&output.stdout).expect("forward");
    }
    assert!(
        output.status.success(),
        "{argv:?} exited with {}",
        output.status
    );
    writeln!(lock, "\n{} {}", elapsed.as_nanos(), usage.max_rss()).expect("report");
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Creates a repository with `commits` commits on `main` (with `git fast-import`);
/// the first commit adds planning/ with `plans` plans of `tasks` tasks each.
/// Returns the blob ids of planning/ at `main`.
pub fn build_history(repo: &Path, commits: usize, plans: usize, tasks: usize) -> Vec<String> {
    build_history_with(repo, commits, plans, tasks, "")
}

/// [`build_history`], with `header` added to every plan's `[plan]` table.
pub fn build_history_with(
    repo: &Path,
    commits: usize,
    plans: usize,
    tasks: usize,
    header: &str,
) -> Vec<String> {
    std::fs::create_dir_all(repo).expect("mkdir");
    git(repo, &["init", "-q", "-b", "main"], None);
    let mut stream = String::new();
    let mut files: Vec<(String, String)> = vec![
        ("planning/goal.md".into(), "Benchmark repository.\n".into()),
        (
            "planning/converge.toml".into(),
            "[invariants.test]\nkind = \"test_suite\"\ncommand = \"true\"\n".into(),
        ),
    ];
    for p in 0..plans {
        let mut text = format!("[plan]\nname = \"Plan {p}\"\n{header}");
        for t in 0..tasks {
            text.push_str(&format!(
                "\n[[tasks]]\nname = \"t{t}\"\ndescription = \"Task {t} of plan {p}.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"test\"]\n"
            ));
            if t > 0 {
                text.push_str(&format!("depends_on = [\"t{}\"]\n", t / 2));
            }
        }
        files.push((format!("planning/plans/p{p}.toml"), text));
    }
    for i in 0..commits {
        let message = format!("commit {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{message}",
            1_700_000_000 + i,
            message.len()
        ));
        if i == 0 {
            for (path, content) in &files {
                stream.push_str(&format!(
                    "M 100644 inline {path}\ndata {}\n{content}\n",
                    content.len()
                ));
            }
        }
        let content = format!("line {i}\n");
        stream.push_str(&format!(
            "M 100644 inline src/file-{}.txt\ndata {}\n{content}\n",
            i % 100,
            content.len()
        ));
    }
    git(repo, &["fast-import", "--quiet"], Some(stream.as_bytes()));
    let listing = git(repo, &["ls-tree", "-r", "main", "--", "planning"], None);
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect()
}

pub fn git(repo: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .spawn()
        .expect("git starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write");
    }
    let output = child.wait_with_output().expect("git runs");
    assert!(output.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The arguments every bench takes: when started as its own supervisor
/// (`--supervise`), supervises and returns `None`; otherwise the number of
/// rounds (`--quick`: 3).
pub fn rounds(full: usize) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--supervise") {
        supervise(&args[2] == "capture", &args[3..]);
        return None;
    }
    if args.iter().any(|a| a == "--quick") {
        return Some(3);
    }
    // `--rounds N`: N rounds of the small rows, without the long convergences
    // (for comparing two builds where only those rows matter).
    if let Some(n) = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
    {
        return Some(n.parse().expect("--rounds takes a number"));
    }
    Some(full)
}

/// Whether the long convergences run: only in a full run (no `--quick`, no
/// `--rounds`).
pub fn full_run() -> bool {
    !std::env::args().any(|a| a == "--quick" || a == "--rounds")
}

/// Prints the rows as a markdown table.
pub fn print_rows(rows: Vec<Row>, runs: usize) {
    println!("| benchmark | median wall | peak RSS | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let (baseline, ratio) = match &row.baseline {
            Some((name, b)) => (
                format!(
                    "{name}: {:.1} ms, {:.1} MiB",
                    ms(b.median),
                    mib(b.max_rss_kib)
                ),
                format!(
                    "{:.2}x",
                    row.measured.median.as_secs_f64() / b.median.as_secs_f64()
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {:.1} ms | {:.1} MiB | {baseline} | {ratio} | {} |",
            row.name,
            ms(row.measured.median),
            mib(row.measured.max_rss_kib),
            row.target
        );
    }
    println!(
        "\n{runs} rounds; in each, the baseline and the measured command run once, in turn. Medians of wall time \
         including process start, output to /dev/null; peak RSS is the largest of the runs."
    );
}

pub fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    std::fs::write(full, text).expect("write");
}

/// A new repository with a README, `planning/goal.md` and this configuration.
pub fn project(repo: &Path, config: &str) {
    std::fs::create_dir_all(repo).expect("mkdir");
    git(repo, &["init", "-q", "-b", "main"], None);
    git(repo, &["config", "user.name", "Bench"], None);
    git(repo, &["config", "user.email", "bench@example.com"], None);
    write(repo, "README.md", "bench\n");
    write(repo, "planning/goal.md", "Benchmark.\n");
    write(repo, "planning/converge.toml", config);
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
