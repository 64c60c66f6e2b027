//! Logging: `tracing` to stdout as JSON lines (for log pipelines) or text (for people).
//! `RUST_LOG` overrides the default `info` filter.

mod call;
pub mod metrics;
pub mod trace;

pub use call::ErrorChain;
pub(crate) use call::{CallRecord, call_event};
use tracing_subscriber::{EnvFilter, fmt};

/// How log events are written: JSON lines for log pipelines, or text for people.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber. Safe to call more than once: later calls are ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a terminal: escape codes in a file or a log pipe are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    log_panics();
}

/// A panic (in any task) becomes one log event in the configured format, with where it happened,
/// instead of the standard hook's lines on stderr (and, with RUST_BACKTRACE, a backtrace built
/// on every panic).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        tracing::error!(
            target: "cams_flows::panic",
            panic = message,
            location,
            thread = std::thread::current().name(),
            "a task panicked"
        );
    }));
}
