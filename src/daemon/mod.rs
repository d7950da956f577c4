//! `converge watch`: the daemon. The only place converge uses tokio, and only
//! at the edge: signals, timers and the file-event channel run on a
//! current-thread runtime; the tick itself stays synchronous on one thread
//! that owns the repository (`worker.rs`), so it is exactly the tick
//! `converge reconcile --once` runs, lock included.
//!
//! `triggers.rs` (pure) decides when to tick: one tick per batch of triggers,
//! whatever arrives while a tick runs joins the next batch. `files.rs` filters
//! file events to planning/, the refs and the runs' exit records.
//!
//! With `[serve] listen`, `http/` serves the dashboard, the state, metrics and
//! the GitHub webhook on this runtime: the tick thread publishes a `Board`
//! after each tick (`board.rs`), the handlers only read it, and a webhook
//! delivery only fires a trigger.

pub mod board;
pub mod files;
pub mod http;
pub mod triggers;
pub mod worker;

use std::sync::mpsc;
use std::time::Instant;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::watch;

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
    Files(Source),
    Done(Finished),
    Stop(&'static str, i32),
    Hangup,
    Webhook,
    Deadline,
    WorkerGone,
}

/// The HTTP endpoints: started after the first tick that read `[serve]
/// listen`; a later change of the address needs a restart.
enum Http {
    Off,
    On(SocketAddr),
    /// The address could not be bound (logged once).
    Failed(SocketAddr),
}

impl Http {
    async fn follow(
        &mut self,
        board: &watch::Receiver<Arc<board::Board>>,
        wake: &tokio::sync::mpsc::UnboundedSender<()>,
    ) {
        let listen = board.borrow().listen;
        let configured = match self {
            Http::Off => None,
            Http::On(at) | Http::Failed(at) => Some(*at),
        };
        let Some(listen) = listen else { return };
        if configured.is_some() {
            if configured != Some(listen) && !matches!(self, Http::Failed(_)) {
                tracing::debug!(%listen, "[serve] listen changed: restart converge watch to move the endpoints");
            }
            return;
        }
        match http::start(listen, board.clone(), wake.clone()).await {
            Ok(bound) => {
                tracing::info!(
                    address = %bound,
                    "serving the dashboard, /api/v1/state, /metrics and /webhook/github"
                );
                *self = Http::On(listen);
            }
            Err(e) => {
                tracing::error!(
                    %listen,
                    error = %e,
                    "cannot listen for HTTP: the endpoints are off until converge watch restarts"
                );
                *self = Http::Failed(listen);
            }
        }
    }
}

async fn serve(repo: Repo, options: WorkerOptions) -> Result<Ended, DaemonError> {
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;
    let roots = Roots::new(repo.workdir().ok(), repo.common_dir()).map_err(DaemonError::Roots)?;
    let (file_tx, mut file_rx) = unbounded_channel();
    let _watch = files::watch(&roots, move |source| {
        // The loop is gone only when the daemon ends.
        let _ = file_tx.send(source);
    })
    .map_err(DaemonError::Watch)?;
    tracing::info!(
        repository = %roots.common.display(),
        pid = std::process::id(),
        "watching planning/, the refs and the run directories"
    );

    let (done_tx, mut done_rx) = unbounded_channel();
    let (request_tx, request_rx) = mpsc::channel();
    let (publisher, board) = board::Publisher::new();
    let (wake_tx, mut wake_rx) = unbounded_channel();
    let mut http = Http::Off;
    let worker = std::thread::Builder::new()
        .name("converge-tick".into())
        .spawn(move || {
            let done = |finished| {
                // The loop may be gone (an abort): nothing to tell then.
                let _ = done_tx.send(finished);
            };
            worker::serve(&repo, &options, &request_rx, &done, publisher);
        })
        .map_err(DaemonError::Thread)?;

    let mut triggers = Triggers::new(Instant::now(), worker::DEFAULT_INTERVAL);
    loop {
        triggers.due(Instant::now());
        if let Some(batch) = triggers.start_at(Instant::now()) {
            request_tx
                .send(batch)
                .map_err(|_| DaemonError::WorkerGone)?;
        }
        if triggers.done() {
            break;
        }
        let mut channels = Channels {
            files: &mut file_rx,
            done: &mut done_rx,
            wake: &mut wake_rx,
        };
        let event = next_event(&triggers, &mut channels, &mut signals).await;
        match event {
            Event::Files(source) => {
                tracing::trace!(?source, "file event");
                triggers.file_event(Instant::now());
            }
            Event::Done(finished) => {
                triggers.finished(Instant::now(), finished);
                http.follow(&board, &wake_tx).await;
            }
            Event::Webhook => triggers.fire(triggers::Cause::Webhook),
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

/// The channels the loop waits on besides signals.
struct Channels<'a> {
    files: &'a mut UnboundedReceiver<Source>,
    done: &'a mut UnboundedReceiver<Finished>,
    wake: &'a mut UnboundedReceiver<()>,
}

async fn next_event(triggers: &Triggers, ch: &mut Channels<'_>, signals: &mut Signals) -> Event {
    let deadline = triggers.next_deadline();
    let sleep = async move {
        match deadline {
            Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        source = ch.files.recv() => match source {
            Some(source) => Event::Files(source),
            // The watch ended: keep going on timers and signals.
            None => std::future::pending().await,
        },
        done = ch.done.recv() => done.map_or(Event::WorkerGone, Event::Done),
        // The sender lives as long as the loop.
        Some(()) = ch.wake.recv() => Event::Webhook,
        _ = signals.term.recv() => Event::Stop("SIGTERM", 15),
        _ = signals.int.recv() => Event::Stop("SIGINT", 2),
        _ = signals.hup.recv() => Event::Hangup,
        () = sleep => Event::Deadline,
    }
}
