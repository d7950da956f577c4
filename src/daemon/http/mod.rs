//! The HTTP endpoints of `converge watch` (`[serve] listen`), on the daemon's
//! own runtime. Read-only: the handlers read the last [`Board`] the tick
//! thread published and never touch the repository; the webhook only wakes a
//! tick. No write endpoint.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard (`dashboard.rs`) |
//! | `GET /api/v1/state` | the JSON `converge status --json` prints |
//! | `GET /metrics` | Prometheus text format (`metrics.rs`) |
//! | `POST /webhook/github` | a signed delivery wakes a tick (`webhook.rs`) |

pub mod dashboard;
pub mod metrics;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::board::Board;
use webhook::Verdict;

pub use metrics::report_forge_rate_limit;

/// What the handlers share.
#[derive(Debug, Clone)]
struct App {
    board: watch::Receiver<Arc<Board>>,
    /// Wakes a tick.
    wake: mpsc::UnboundedSender<()>,
    secret: Option<Arc<[u8]>>,
}

/// Binds `listen` and serves on the current runtime until the daemon ends;
/// returns the bound address (the port chosen when `listen` has port 0).
pub async fn start(
    listen: SocketAddr,
    board: watch::Receiver<Arc<Board>>,
    wake: mpsc::UnboundedSender<()>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let secret = webhook::secret_from_env().map(Arc::from);
    if secret.is_none() {
        tracing::info!(
            "{} is not set: POST /webhook/github answers 503",
            webhook::SECRET_VAR
        );
    }
    let app = router(App {
        board,
        wake,
        secret,
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    Ok(bound)
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/v1/state", get(state))
        .route("/metrics", get(metrics_text))
        .route("/webhook/github", post(github))
        .fallback(not_found)
        .layer(middleware::from_fn(trace))
        .with_state(app)
}

/// A debug span per request, and a debug event with its status and time.
async fn trace(request: Request, next: Next) -> Response {
    let span = tracing::debug_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path()
    );
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::debug!(
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }
    .instrument(span)
    .await
}

async fn index(State(app): State<App>) -> Response {
    let board = app.board.borrow().clone();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        dashboard::render(&board),
    )
        .into_response()
}

async fn state(State(app): State<App>) -> Response {
    let board = app.board.borrow().clone();
    match &board.state {
        // As `converge status --json` prints it, byte for byte.
        Some(value) => (
            [(header::CONTENT_TYPE, "application/json")],
            format!("{value:#}\n"),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no state yet: the first tick has not succeeded\n",
        )
            .into_response(),
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    let board = app.board.borrow().clone();
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&board),
    )
        .into_response()
}

async fn github(State(app): State<App>, headers: HeaderMap, request: Request) -> Response {
    // A declared length over the limit is refused before the body is read;
    // a body without one is cut off at the limit.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > webhook::MAX_BODY as u64) {
        return too_large();
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), webhook::MAX_BODY).await else {
        return too_large();
    };
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
    let event = header("x-github-event");
    let verdict = webhook::judge(
        app.secret.as_deref(),
        header("x-hub-signature-256"),
        event,
        &body,
    );
    let event = event.map(String::from_utf8_lossy).unwrap_or_default();
    let delivery = header("x-github-delivery")
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    match verdict {
        Verdict::Wake => {
            tracing::info!(%event, %delivery, "webhook: ticking");
            // The loop is gone only when the daemon ends.
            let _ = app.wake.send(());
            (StatusCode::ACCEPTED, "a tick will run\n").into_response()
        }
        Verdict::Ping => (StatusCode::OK, "pong\n").into_response(),
        Verdict::BadSignature => {
            tracing::warn!(%event, %delivery, "webhook: missing or bad signature, refused");
            (
                StatusCode::UNAUTHORIZED,
                "missing or bad X-Hub-Signature-256\n",
            )
                .into_response()
        }
        Verdict::NoSecret => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} is not set where converge watch runs: no delivery can be verified, so none is accepted\n",
                webhook::SECRET_VAR
            ),
        )
            .into_response(),
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("deliveries over {} bytes are refused\n", webhook::MAX_BODY),
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
