//! Traces: one SERVER span per call, child of the caller's W3C trace context, and one
//! CLIENT span per attempt at CAMS, exported over OTLP/gRPC when the standard `OTEL_*`
//! environment names an endpoint.
//!
//! The OpenTelemetry API is used directly, not through `tracing-opentelemetry`: that layer costs
//! about a microsecond per span even when the span is not sampled, and it would make every
//! `tracing` span of the process an OpenTelemetry one. With no endpoint there is no provider at
//! all, [`CallTracer`] is `None`, and a call pays one branch.

mod call;
mod env;
mod propagation;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    trace::{Sampler, SdkTracerProvider},
};

pub use call::{AttemptOutcome, AttemptSpan, CallSpan, CallTracer, note_queue_wait};
pub use env::{EnvError, from_env};
pub(crate) use propagation::inject;

/// How long the drain's end waits for the last spans to be exported.
const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// What to do with traces: `[tracing]` and the `OTEL_*` environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingConfig {
    /// Where spans go; `None` (no OTLP endpoint set) turns tracing off.
    pub export: Option<OtlpExport>,
    /// Whether CAMS, a third party, receives the call's trace context.
    pub propagate_upstream: bool,
}

/// The exporter, as the standard environment describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExport {
    /// An OTLP/gRPC endpoint, `http://collector:4317` (or `https://`).
    pub endpoint: String,
    /// `service.name` of the spans (`OTEL_SERVICE_NAME`; `cams-flows` by default).
    pub service_name: String,
    pub sampler: SamplerChoice,
}

/// `OTEL_TRACES_SAMPLER` and its argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    /// The caller's decision when it sent one; this for root spans.
    ParentBased(RootSampler),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
}

impl SamplerChoice {
    fn sampler(self) -> Sampler {
        let root = |r: RootSampler| match r {
            RootSampler::AlwaysOn => Sampler::AlwaysOn,
            RootSampler::AlwaysOff => Sampler::AlwaysOff,
            RootSampler::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        };
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Self::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
        }
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP trace exporter: {0}")]
pub struct ExporterError(String);

/// The tracer provider, owned by the application: it is shut down (and its last spans flushed)
/// at the end of the drain.
#[derive(Debug, Default)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
    calls: CallTracer,
}

impl Tracing {
    /// The provider the configuration asks for, or none. Must run inside the tokio runtime: the
    /// exporter's gRPC channel spawns its connection task there.
    pub fn start(config: &TracingConfig) -> Result<Self, ExporterError> {
        let Some(export) = &config.export else {
            return Ok(Self::default());
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(export.endpoint.clone());
        if export.endpoint.starts_with("https://") {
            builder = builder
                .with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
        }
        let exporter = builder.build().map_err(|e| ExporterError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(export.sampler.sampler())
            .with_resource(
                Resource::builder()
                    .with_service_name(export.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("cams-flows");
        tracing::info!(
            endpoint = %export.endpoint,
            service_name = %export.service_name,
            sampler = ?export.sampler,
            propagate_upstream = config.propagate_upstream,
            "exporting traces over OTLP"
        );
        Ok(Self {
            provider: Some(provider),
            calls: CallTracer::new(tracer, config.propagate_upstream),
        })
    }

    /// The handle the call path creates spans with (`None` inside when tracing is off).
    pub fn calls(&self) -> CallTracer {
        self.calls.clone()
    }

    /// Exports what is left, within a bound; after this no span is recorded.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The batch processor's shutdown blocks until its thread has exported: off the runtime's
        // workers, so that the exporter's own tasks keep running meanwhile.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_BOUND)).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("traces flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "the last traces could not be exported"),
            Err(error) => tracing::warn!(%error, "the trace exporter's shutdown failed"),
        }
    }
}

/// Shared by the call handles: the tracer and the propagation policy.
#[derive(Debug)]
struct Shared {
    tracer: opentelemetry_sdk::trace::SdkTracer,
    propagate_upstream: bool,
}
