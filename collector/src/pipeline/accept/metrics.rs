//! Accepting OTLP metrics: they are not archived; the tenant's `metrics` switch, redaction of
//! resource and point attributes, and translation into series-store points
//! ([`crate::telemetry::otlp`]), applied once the request is accepted.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};

use super::{Accept, Acceptance};
use crate::otlp::Signal;
use crate::telemetry::otlp::{Target, data_points, translate};
use crate::tenancy::Resolved;
use crate::tenancy::redact::Redactor;

impl Accept for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;

    fn accept(&mut self, resolved: &[Resolved], into: &mut Acceptance) {
        for (rm, res) in self.resource_metrics.iter_mut().zip(resolved) {
            let Some((tenant, state)) = res else { continue };
            let redactor = state.redactor.as_ref();
            if !state.policy.signals.metrics {
                for _ in rm
                    .scope_metrics
                    .iter()
                    .flat_map(|s| &s.metrics)
                    .filter_map(|m| m.data.as_ref())
                    .flat_map(|d| 0..data_points(d))
                {
                    into.refusals.refuse("signal_disabled", || {
                        format!("tenant \"{tenant}\" may not send metrics")
                    });
                }
                continue;
            }
            if let (Some(r), Some(resource)) = (redactor, rm.resource.as_mut()) {
                r.attributes(&mut resource.attributes);
            }
            let target = Target::new(rm.resource.as_ref());
            let points = &mut into.derived.points;
            points.extend(target.info(tenant, rm.resource.as_ref()));
            for sm in &mut rm.scope_metrics {
                for metric in &mut sm.metrics {
                    if let Some(r) = redactor {
                        redact_points(r, metric);
                    }
                    for problem in translate(tenant, &target, metric, points) {
                        into.refusals.refuse("invalid_record", || problem);
                    }
                }
            }
        }
    }
}

/// Redacts the attributes of every data point of `metric`.
fn redact_points(r: &Redactor, metric: &mut Metric) {
    match &mut metric.data {
        Some(Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        Some(Data::Summary(s)) => s
            .data_points
            .iter_mut()
            .for_each(|p| r.attributes(&mut p.attributes)),
        None => {}
    }
}
