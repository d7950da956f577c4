//! The workload generator: repositories with N commits and plans of M `sim`
//! tasks in a chosen DAG shape, with cheap invariants. Used by the benchmarks
//! and, as a program, by `cargo run --release --example workload -- --help`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// The shape of each plan's dependency graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// t0 ← t1 ← t2 ← ...: every task depends on the one before.
    Chain,
    /// Stacked diamonds: a top, two sides depending on it, a bottom depending on
    /// both; each top depends on the previous bottom.
    Diamonds,
    /// One root; every other task depends on it.
    FanOut,
    /// Every pair (earlier, later) is an edge with this probability.
    Random { density: f64 },
}

impl Shape {
    pub fn parse(name: &str, density: f64) -> Result<Shape, String> {
        match name {
            "chain" => Ok(Shape::Chain),
            "diamonds" | "diamond" => Ok(Shape::Diamonds),
            "fan-out" | "fanout" => Ok(Shape::FanOut),
            "random" if (0.0..=1.0).contains(&density) => Ok(Shape::Random { density }),
            "random" => Err(format!("--density must be within 0..=1, not {density}")),
            other => Err(format!(
                "unknown shape `{other}`: use chain, diamonds, fan-out or random"
            )),
        }
    }

    /// The tasks task `i` depends on (indices below `i`).
    pub fn deps(self, i: usize, rng: &mut super::Rng) -> Vec<usize> {
        match self {
            Shape::Chain => i.checked_sub(1).into_iter().collect(),
            Shape::FanOut => {
                if i == 0 {
                    vec![]
                } else {
                    vec![0]
                }
            }
            Shape::Diamonds => match i % 4 {
                0 => i.checked_sub(1).into_iter().collect(),
                1 | 2 => vec![i - (i % 4)],
                _ => vec![i - 2, i - 1],
            },
            Shape::Random { density } => {
                // A threshold on 53 random bits: probability `density` per pair.
                let threshold = (density * (1u64 << 53) as f64) as u64;
                (0..i).filter(|_| rng.next() >> 11 < threshold).collect()
            }
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Commits on `main` (the first adds `planning/`).
    pub commits: usize,
    /// Plans, each with `tasks` tasks of `shape`.
    pub plans: usize,
    pub tasks: usize,
    pub shape: Shape,
    pub seed: u64,
    /// Every `fail_every`-th task fails its first attempt (0: none fail).
    pub fail_every: usize,
    /// The invariant every task runs (`true` by default: as cheap as can be).
    pub invariant: String,
    /// Plans start `active` (else `draft`: nothing is dispatched).
    pub active: bool,
    /// `[reconcile]` keys added to `planning/converge.toml`.
    pub reconcile: String,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            commits: 1,
            plans: 1,
            tasks: 100,
            shape: Shape::Random { density: 0.02 },
            seed: 7,
            fail_every: 0,
            invariant: "true".into(),
            active: true,
            reconcile: "max_agents = 8\nactions_per_tick = 8\ndispatches_per_hour = 1000000\n"
                .into(),
        }
    }
}

/// Counts of what was generated.
#[derive(Debug, Clone, Copy)]
pub struct Generated {
    pub tasks: usize,
    pub edges: usize,
}

impl Workload {
    /// The files of `planning/`, by path.
    pub fn planning(&self) -> (Vec<(String, String)>, Generated) {
        let mut files = vec![
            (
                "planning/goal.md".to_owned(),
                "A generated workload.\n".to_owned(),
            ),
            (
                "planning/converge.toml".to_owned(),
                format!(
                    "[reconcile]\ndefault_harness = \"sim\"\n{}\n[invariants.ok]\nkind = \"custom\"\ncommand = \"{}\"\n",
                    self.reconcile, self.invariant
                ),
            ),
        ];
        let mut rng = super::Rng(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut edges = 0;
        let state = if self.active { "active" } else { "draft" };
        for p in 0..self.plans {
            let mut text = format!("[plan]\nname = \"Plan {p}\"\nstate = \"{state}\"\n");
            for i in 0..self.tasks {
                let deps = self.shape.deps(i, &mut rng);
                edges += deps.len();
                let deps: Vec<String> = deps.iter().map(|d| format!("\"t{d}\"")).collect();
                let fail = if self.fail_every > 0 && i % self.fail_every == self.fail_every - 1 {
                    "fail_attempts = 1\n"
                } else {
                    ""
                };
                let _ = write!(
                    text,
                    "\n[[tasks]]\nname = \"t{i}\"\ndescription = \"Task {i} of plan {p}.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"ok\"]\ndepends_on = [{}]\n[tasks.sim]\n{fail}files = [{{ path = \"p{p}/{i}.txt\", content = \"{i}\\n\" }}]\n",
                    deps.join(", ")
                );
            }
            files.push((format!("planning/plans/p{p}.toml"), text));
        }
        let generated = Generated {
            tasks: self.plans * self.tasks,
            edges,
        };
        (files, generated)
    }

    /// Creates the repository at `repo` (with `git fast-import`): `commits`
    /// commits on `main`, the first adding a README and `planning/`, the others
    /// each changing one of 100 files under `src/`; `main` checked out.
    pub fn create(&self, repo: &Path) -> Generated {
        let (files, generated) = self.planning();
        std::fs::create_dir_all(repo).expect("mkdir");
        super::git(repo, &["init", "-q", "-b", "main"], None);
        super::git(repo, &["config", "user.name", "Bench"], None);
        super::git(repo, &["config", "user.email", "bench@example.com"], None);
        let mut stream = Vec::new();
        for i in 0..self.commits.max(1) {
            let message = format!("commit {i}\n");
            let _ = write!(
                stream,
                "commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{message}",
                1_700_000_000 + i,
                message.len()
            );
            if i == 0 {
                let readme = "A generated workload.\n";
                let _ = write!(
                    stream,
                    "M 100644 inline README.md\ndata {}\n{readme}\n",
                    readme.len()
                );
                for (path, content) in &files {
                    let _ = write!(
                        stream,
                        "M 100644 inline {path}\ndata {}\n{content}\n",
                        content.len()
                    );
                }
            }
            let content = format!("line {i}\n");
            let _ = write!(
                stream,
                "M 100644 inline src/file-{}.txt\ndata {}\n{content}\n",
                i % 100,
                content.len()
            );
        }
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::piped())
            .spawn()
            .expect("git fast-import starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&stream)
            .expect("write the stream");
        assert!(child.wait().expect("waits").success(), "git fast-import");
        super::git(repo, &["reset", "-q", "--hard", "main"], None);
        generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(shape: Shape, n: usize) -> Vec<Vec<usize>> {
        let mut rng = super::super::Rng(1);
        (0..n).map(|i| shape.deps(i, &mut rng)).collect()
    }

    #[test]
    fn shapes() {
        assert_eq!(deps(Shape::Chain, 3), [vec![], vec![0], vec![1]]);
        assert_eq!(deps(Shape::FanOut, 3), [vec![], vec![0], vec![0]]);
        assert_eq!(
            deps(Shape::Diamonds, 6),
            [vec![], vec![0], vec![0], vec![1, 2], vec![3], vec![4]]
        );
        let none = deps(Shape::Random { density: 0.0 }, 50);
        assert!(none.iter().all(Vec::is_empty));
        let all = deps(Shape::Random { density: 1.0 }, 5);
        assert_eq!(all[4], [0, 1, 2, 3]);
    }
}
