//! Diagnostic logs (tracing) on standard error. `converge watch` always logs
//! (`--log-format text|json`, at `info` unless `CONVERGE_LOG` says otherwise);
//! the other commands log only when `CONVERGE_LOG` is set, so that their human
//! output is unchanged. `CONVERGE_LOG` takes `RUST_LOG`-style directives, for
//! example `debug` or `converge::daemon=debug,info`.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// The environment variable with the log filter.
pub const ENV: &str = "CONVERGE_LOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (for journald, Loki, jq).
    Json,
}

/// Installs the subscriber: `default` is the filter when `CONVERGE_LOG` is
/// unset; an invalid `CONVERGE_LOG` is reported and the default used.
pub fn init(format: LogFormat, default: &str) {
    let (filter, bad) = match std::env::var(ENV) {
        Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(default), Some((text, e))),
        },
        _ => (EnvFilter::new(default), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // A second installation (tests in one process) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(false).try_init(),
    };
    if let Some((text, e)) = bad {
        tracing::warn!(value = text, error = %e, "{ENV} is not a valid filter; using `{default}`");
    }
}

/// For the commands other than `watch`: logs only when asked for.
pub fn init_if_asked() {
    if std::env::var_os(ENV).is_some_and(|v| !v.is_empty()) {
        init(LogFormat::Text, "warn");
    }
}
