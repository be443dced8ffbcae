//! Tracing set-up (text or JSON, level reloadable at run time) and the metrics registry.

pub mod metrics;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the log filter of a running process.
pub type LogReloadHandle = reload::Handle<EnvFilter, Registry>;

/// Installs the global subscriber once. Later calls (tests) are no-ops and return `None`.
pub fn init(log: &LogConfig) -> Option<LogReloadHandle> {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match log.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        // Colour only when a person reads the terminal; a journal or a file gets plain text.
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry.with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).try_init()
        }
    };
    if installed.is_ok() {
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(panic = %info, "panic: this is a bug; the process exits and its supervisor restarts it");
        }));
        Some(handle)
    } else {
        None
    }
}
