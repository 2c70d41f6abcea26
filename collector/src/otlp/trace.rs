//! OTLP trace enums → the names stored in the `spans` table and used as metric labels.

use opentelemetry_proto::tonic::trace::v1::{span, status};

/// A span kind's OTLP name (`SPAN_KIND_SERVER`); unknown values are `SPAN_KIND_UNSPECIFIED`.
pub fn span_kind(kind: i32) -> &'static str {
    span::SpanKind::try_from(kind)
        .map(|k| k.as_str_name())
        .unwrap_or("SPAN_KIND_UNSPECIFIED")
}

/// A status code's OTLP name (`STATUS_CODE_ERROR`); unknown values are `STATUS_CODE_UNSET`.
pub fn status_code(code: i32) -> &'static str {
    status::StatusCode::try_from(code)
        .map(|c| c.as_str_name())
        .unwrap_or("STATUS_CODE_UNSET")
}
