//! The daemon's own observability: its log lines and spans ([`init_tracing`]) and its metrics
//! ([`catalog::Catalog`], rendered on `/metrics` with the tenants' [`series::SeriesStore`]).
//!
//! Tracing is process-global and initialised once by `main` (inside the runtime, which the OTLP
//! exporter needs); the metric catalog is per daemon instance (tests run several daemons in one
//! process), built by the composition root and handed to the contexts that count things.
//!
//! Spans: `otlp.export` (one per OTLP request, with transport, signal and tenant),
//! `store.commit` (one per Parquet commit, with tenant and table) and `query` (with tenant). Log
//! lines inside a span carry its fields, the tenant among them. With `tracing.otlp_endpoint` set
//! the spans are exported over OTLP/gRPC; the exporter marks its requests with the
//! [`SELF_EXPORT_HEADER`] metadata, and a request so marked — or a commit of the
//! `tracing.tenant` tenant — makes no span, so exporting to this very daemon cannot feed back.

pub mod catalog;
pub mod derived;
pub mod endpoint;
pub mod otlp;
pub mod series;

pub use catalog::Catalog;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_subscriber::Layer as _;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{FormatFields, JsonFields, Writer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, SelfTracing};

/// gRPC metadata (and HTTP header) marking an export of the daemon's own spans.
pub const SELF_EXPORT_HEADER: &str = "x-tenantscope-self";

/// Keeps the span exporter alive; [`Tracing::shutdown`] flushes it.
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// A function that exports the spans buffered so far (bounded wait).
    pub fn flusher(&self) -> impl FnOnce() + Send + 'static {
        let provider = self.provider.clone();
        move || {
            if let Some(p) = provider {
                let _ = p.force_flush();
            }
        }
    }

    /// Exports the spans still buffered (bounded wait) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// Logs every panic as an `error` event (thread, source location, message), then runs the
/// default hook, which prints it (and a backtrace, when `RUST_BACKTRACE` asks) to stderr. The
/// release binary carries no symbol table (README, "Binary size"), so backtrace frames are bare
/// addresses there; the panic's `file:line:column` is compiled in and always logged.
pub fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(not a string)");
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        tracing::error!(thread, location, panic = message, "panicked");
        default(info);
    }));
}

/// Installs the global `tracing` subscriber: log lines to stderr (`RUST_LOG`, when set,
/// overrides `level`), and the OTLP span exporter when `tracing.otlp_endpoint` is set. Must run
/// inside the Tokio runtime when spans are exported.
pub fn init_tracing(
    format: LogFormat,
    level: &str,
    spans: Option<&SelfTracing>,
) -> anyhow::Result<Tracing> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => tracing_subscriber::EnvFilter::builder().parse(env)?,
        _ => tracing_subscriber::EnvFilter::builder().parse(level)?,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(SpanJsonFields)
            .boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let provider = match spans.and_then(|s| s.otlp_endpoint.as_deref().map(|e| (s, e))) {
        Some((config, endpoint)) => Some(span_provider(config, endpoint)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("tenantscope"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("tenantscope", tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber failed: {e}"))?;
    Ok(Tracing { provider })
}

/// JSON span fields (what log lines inside a span carry) that `Span::record` appends to.
/// `tracing-subscriber`'s `JsonFields` parses a span's fields and serialises them again on every
/// record, and each OTLP request's span records twice (tenant, outcome): 3 % of the daemon's CPU
/// under `tiny-v1` load. Both sides are JSON objects, so `{"a":1}` and `{"b":2}` join as
/// `{"a":1,"b":2}`; a field recorded twice appears twice, and the last one counts when read.
struct SpanJsonFields;

impl<'w> FormatFields<'w> for SpanJsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        JsonFields::new().format_fields(writer, fields)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let mut added = String::new();
        JsonFields::new().format_fields(Writer::new(&mut added), fields)?;
        let joined = match (current.fields.strip_suffix('}'), added.strip_prefix('{')) {
            (_, Some("}")) => return Ok(()),
            (Some(head), Some(tail)) if head != "{" => format!("{head},{tail}"),
            _ => added,
        };
        current.fields = joined;
        Ok(())
    }
}

fn span_provider(config: &SelfTracing, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(SELF_EXPORT_HEADER, "1".parse()?);
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(metadata)
        .build()?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let resource = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", "tenantscope"))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attribute(KeyValue::new("tenant.id", config.tenant.to_string()))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests;
