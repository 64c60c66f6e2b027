//! The per-call record: one log event at the end of every call.

/// What the one log event of a call says about it.
pub(crate) struct CallRecord<'a> {
    /// The RPC, as `grpc_method` labels it in the metrics (`GetFlow`, `ListFlows`).
    pub method: &'static str,
    pub tenant: &'a str,
    pub flow_id: &'a str,
    pub caller: Option<&'a str>,
    pub latency_us: u64,
    /// The call's trace, when one is active: its ids go on the line, for finding the trace.
    pub trace: Option<(opentelemetry::trace::TraceId, opentelemetry::trace::SpanId)>,
}

/// The call's log event: every field on the event itself, with no span, so that a call whose
/// event is filtered out (a cache hit at the default level) costs the logging layer nothing, and
/// one that is logged is formatted once. A macro because a `tracing` level belongs to its
/// callsite.
macro_rules! call_event {
    ($level:expr, $record:expr, $($fields:tt)*) => {
        tracing::event!(
            target: "cams_flows::call",
            $level,
            method = $record.method,
            tenant = %$record.tenant.escape_debug(),
            flow_id = %$record.flow_id.escape_debug(),
            caller = $record.caller,
            latency_us = $record.latency_us,
            trace_id = $record.trace.map(|(t, _)| tracing::field::display(t)),
            span_id = $record.trace.map(|(_, s)| tracing::field::display(s)),
            $($fields)*
        )
    };
}

pub(crate) use call_event;

/// An error and its causes, `a: b: c`, each cause once: a message that already quotes its cause
/// (as most do) is not repeated.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Quotes(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Hides(#[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(ErrorChain(&Quotes(io())).to_string(), "outer: disk on fire");
        assert_eq!(ErrorChain(&Hides(io())).to_string(), "outer: disk on fire");
    }
}
