//! `converge watch`: the daemon. The only place converge uses tokio, and only
//! at the edge: signals, timers and the file-event channel run on a
//! current-thread runtime; the tick itself stays synchronous on one thread
//! that owns the repository (`worker.rs`), so it is exactly the tick
//! `converge reconcile --once` runs, lock included.
//!
//! `triggers.rs` (pure) decides when to tick: one tick per batch of triggers,
//! whatever arrives while a tick runs joins the next batch. `files.rs` filters
//! file events to planning/, the refs and the runs' exit records.

pub mod files;
pub mod triggers;
pub mod worker;

use std::sync::mpsc;
use std::time::Instant;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::git::Repo;

use files::{Roots, Source};
use triggers::{Finished, Stop, Triggers};
pub use worker::WorkerOptions;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the event loop")]
    Runtime(#[source] std::io::Error),
    #[error("cannot install the signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("cannot find the directories to watch")]
    Roots(#[source] std::io::Error),
    #[error("cannot watch planning/, the refs and the run directories")]
    Watch(#[source] notify::Error),
    #[error("cannot start the tick thread")]
    Thread(#[source] std::io::Error),
    #[error("the tick thread stopped unexpectedly")]
    WorkerGone,
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A stop signal: the tick that ran finished first.
    Stopped,
}

/// Runs the daemon until SIGTERM or SIGINT. A second signal ends the process
/// at once (exit 128 + the signal number), mid-tick if need be: what a killed
/// tick leaves is recovered by the next one (docs/reconcile.md).
pub fn run(repo: Repo, options: WorkerOptions) -> Result<Ended, DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(serve(repo, options))
}

/// The signals the daemon listens to.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// What woke the loop.
enum Event {
    Files(Vec<Source>),
    Done(Finished),
    Stop(&'static str, i32),
    Hangup,
    Deadline,
    WorkerGone,
}

async fn serve(repo: Repo, options: WorkerOptions) -> Result<Ended, DaemonError> {
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;
    let roots = Roots::new(repo.workdir().ok(), repo.common_dir()).map_err(DaemonError::Roots)?;
    let (file_tx, mut file_rx) = unbounded_channel();
    let _watch = files::watch(&roots, move |sources| {
        // The loop is gone only when the daemon ends.
        let _ = file_tx.send(sources);
    })
    .map_err(DaemonError::Watch)?;
    tracing::info!(
        repository = %roots.common.display(),
        pid = std::process::id(),
        "watching planning/, the refs and the run directories"
    );

    let (done_tx, mut done_rx) = unbounded_channel();
    let (request_tx, request_rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("converge-tick".into())
        .spawn(move || {
            worker::serve(&repo, &options, &request_rx, &|finished| {
                // The loop may be gone (an abort): nothing to tell then.
                let _ = done_tx.send(finished);
            });
        })
        .map_err(DaemonError::Thread)?;

    let mut triggers = Triggers::new(Instant::now(), worker::DEFAULT_INTERVAL);
    loop {
        triggers.due(Instant::now());
        if let Some(batch) = triggers.start() {
            request_tx
                .send(batch)
                .map_err(|_| DaemonError::WorkerGone)?;
        }
        if triggers.done() {
            break;
        }
        let event = next_event(&triggers, &mut file_rx, &mut done_rx, &mut signals).await;
        match event {
            Event::Files(sources) => {
                tracing::debug!(?sources, "file events");
                triggers.fire(triggers::Cause::Files);
            }
            Event::Done(finished) => triggers.finished(Instant::now(), finished),
            Event::Hangup => {
                tracing::info!("SIGHUP: ticking now");
                triggers.fire(triggers::Cause::Hangup);
            }
            Event::Stop(name, number) => match triggers.stop() {
                Stop::Graceful => tracing::info!(
                    signal = name,
                    tick_running = triggers.running(),
                    "stopping after the current tick; agents keep running; a second signal aborts"
                ),
                Stop::Abort => {
                    tracing::warn!(signal = name, "second signal: aborting now");
                    std::process::exit(128 + number);
                }
            },
            Event::Deadline => {}
            Event::WorkerGone => return Err(DaemonError::WorkerGone),
        }
    }
    drop(request_tx);
    if worker.join().is_err() {
        return Err(DaemonError::WorkerGone);
    }
    tracing::info!("stopped");
    Ok(Ended::Stopped)
}

async fn next_event(
    triggers: &Triggers,
    file_rx: &mut UnboundedReceiver<Vec<Source>>,
    done_rx: &mut UnboundedReceiver<Finished>,
    signals: &mut Signals,
) -> Event {
    let deadline = triggers.next_deadline();
    let sleep = async move {
        match deadline {
            Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        sources = file_rx.recv() => match sources {
            Some(sources) => Event::Files(sources),
            // The watch ended: keep going on timers and signals.
            None => std::future::pending().await,
        },
        done = done_rx.recv() => done.map_or(Event::WorkerGone, Event::Done),
        _ = signals.term.recv() => Event::Stop("SIGTERM", 15),
        _ = signals.int.recv() => Event::Stop("SIGINT", 2),
        _ = signals.hup.recv() => Event::Hangup,
        () = sleep => Event::Deadline,
    }
}
