//! Accepting spans: the tenant's `traces` switch, validation, span RED metrics (before
//! redaction, as the span was sent), redaction, and conversion to rows.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::{Accept, Acceptance, redact_origin, service_name, validate};
use crate::otlp::Signal;
use crate::pipeline::convert::Origin;
use crate::tenancy::Resolved;

impl Accept for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;

    fn accept(&mut self, resolved: &[Resolved], into: &mut Acceptance) {
        for (r, (rs, res)) in self.resource_spans.iter_mut().zip(resolved).enumerate() {
            let Some((tenant, state)) = res else { continue };
            let redactor = state.redactor.as_ref();
            let policy = &state.policy;
            let scopes = redact_origin(
                redactor,
                &mut rs.resource,
                rs.scope_spans.iter_mut().map(|s| s.scope.take()),
            );
            let service = service_name(rs.resource.as_ref());
            for (s, (ss, scope)) in rs.scope_spans.iter_mut().zip(scopes).enumerate() {
                let origin = Origin::new(
                    rs.resource.as_ref(),
                    &rs.schema_url,
                    scope.as_ref(),
                    &ss.schema_url,
                    redactor.map_or("", |r| r.version()),
                );
                for (i, span) in ss.spans.iter_mut().enumerate() {
                    let at = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                    if into.refusals.over_records(&at) {
                        continue;
                    }
                    if !policy.signals.traces {
                        into.refusals.refuse("signal_disabled", || {
                            format!("{}: tenant \"{tenant}\" may not send traces", at())
                        });
                        continue;
                    }
                    if let Err(problem) = validate::span(span, into.limits(policy), &at) {
                        into.refusals.refuse("invalid_record", || problem);
                        continue;
                    }
                    into.derived.span(tenant, &service, span);
                    if let Some(r) = redactor {
                        r.span(span);
                    }
                    into.converter.push_span(tenant, &origin, span);
                }
            }
        }
    }
}
