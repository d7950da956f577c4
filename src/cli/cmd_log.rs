//! `converge log PLAN/TASK`: an attempt's agent output and events.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use super::human::task_key;
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, print};
use crate::rundir::records::{latest_attempts, parse_event};
use crate::rundir::{Layout, layout};

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// PLAN/TASK
    pub task: String,
    /// The attempt (default: the latest).
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
    /// Keep printing until the attempt ends.
    #[arg(long)]
    pub follow: bool,
}

pub fn run(ctx: &Ctx, args: &LogArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    let key = match task_key(&args.task) {
        Ok(key) => key,
        Err(error) => {
            return Err(super::human::snapshot(&repo)
                .ok()
                .and_then(|report| super::human::known_task_named(&report, &args.task).err())
                .unwrap_or(error));
        }
    };
    let rundir = Layout::new(repo.common_dir());
    let attempt = match args.attempt {
        Some(n) => n,
        None => latest_attempts(&rundir)
            .map_err(|e| CliError::failure("cannot read the run records").source(e))?
            .into_iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, n, _)| n)
            .map_or_else(|| Err(no_attempts(&repo, &key)), Ok)?,
    };
    let dir = rundir.run(&key, attempt);
    if !dir.exists() {
        return Err(
            CliError::bad_input(format!("{key} has no attempt {attempt}"))
                .hint(format!("its run records would be in {}", dir.display())),
        );
    }
    print(&format!("# {key}, attempt {attempt} ({})\n", dir.display()))?;
    // The events so far, then the agent's output; `--follow` goes on printing
    // both as they come (a `progress` event as soon as the agent sends it).
    let events = layout::events(&dir);
    let mut events_offset = 0u64;
    print(&new_events(&events, &mut events_offset))?;
    print("--- agent.log\n")?;
    let log = layout::agent_log(&dir);
    let mut offset = 0u64;
    loop {
        if let Ok(mut file) = std::fs::File::open(&log) {
            let _ = file.seek(SeekFrom::Start(offset));
            let mut chunk = Vec::new();
            let _ = file.read_to_end(&mut chunk);
            offset += chunk.len() as u64;
            print(&String::from_utf8_lossy(&chunk))?;
        }
        let exited = layout::exit(&dir).exists();
        if !args.follow {
            break;
        }
        print(&new_events(&events, &mut events_offset))?;
        if exited {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Ok(exit) = std::fs::read_to_string(layout::exit(&dir)) {
        print(&format!("--- exit.json\n{}\n", exit.trim_end()))?;
    }
    Ok(())
}

/// The events appended to `path` since `offset` (whole lines only), one
/// `event AT KIND: MESSAGE` line each; moves `offset` past them.
fn new_events(path: &std::path::Path, offset: &mut u64) -> String {
    let mut out = String::new();
    let Ok(mut file) = std::fs::File::open(path) else {
        return out;
    };
    let _ = file.seek(SeekFrom::Start(*offset));
    let mut chunk = Vec::new();
    let _ = file.read_to_end(&mut chunk);
    // A line still being written is read on the next call.
    let complete = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    *offset += complete as u64;
    for line in String::from_utf8_lossy(&chunk[..complete]).lines() {
        if let Some(event) = parse_event(line) {
            let at = event.at.map(|t| t.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "event {at} {}{}\n",
                event.kind,
                event.message.map(|m| format!(": {m}")).unwrap_or_default()
            ));
        }
    }
    out
}

/// Why a task has no run records: it does not exist (with a suggestion), or it
/// has not run yet.
fn no_attempts(repo: &crate::git::Repo, key: &crate::model::TaskKey) -> CliError {
    // A task that is gone from the plans may still have records; only the
    // path without any is checked against the spec.
    let unknown = super::human::snapshot(repo)
        .ok()
        .and_then(|report| super::human::known_task(&report, key).err());
    unknown.unwrap_or_else(|| {
        CliError::bad_input(format!("{key} has no attempts yet"))
            .hint("`converge status` shows which tasks have run")
    })
}
