//! W3C Trace Context in and out: `traceparent`/`tracestate` read from the call's gRPC metadata,
//! written into the headers of the request to CAMS.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{KeyRef, MetadataMap};

struct Metadata<'a>(&'a MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(|key| match key {
                KeyRef::Ascii(k) => k.as_str(),
                KeyRef::Binary(k) => k.as_str(),
            })
            .collect()
    }
}

struct Headers<'a>(&'a mut http::HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes only its own well-formed names and values; anything else is
        // dropped rather than sent broken.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The caller's trace context, or an empty one (a root) when it sent none or a malformed one.
pub(super) fn extract(metadata: &MetadataMap) -> Context {
    TraceContextPropagator::new().extract(&Metadata(metadata))
}

/// Writes `cx`'s span as the parent into `headers`.
pub(crate) fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut Headers(headers));
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn round_trip() {
        let mut metadata = MetadataMap::new();
        metadata.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("ascii"),
        );
        metadata.insert("tracestate", "vendor=opaque".parse().expect("ascii"));
        let cx = extract(&metadata);
        let span = cx.span();
        let parent = span.span_context();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(parent.is_remote() && parent.is_sampled());
        let mut headers = http::HeaderMap::new();
        inject(&cx, &mut headers);
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(headers["tracestate"], "vendor=opaque");
    }

    #[test]
    fn malformed_context_is_a_root() {
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", "00-zz-yy-01".parse().expect("ascii"));
        let cx = extract(&metadata);
        assert!(!cx.span().span_context().is_valid());
    }
}
