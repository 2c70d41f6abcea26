//! Accepting log records: the tenant's `logs`/`events` switch, validation, redaction, and the
//! write-ahead log records that keep accepted records as OTLP ([`crate::pipeline::log_payload`]).
//! Records of a tenant without redaction rules are read in place and never decoded.

use audit_store::{Table, TenantId};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;

use super::{Accept, Acceptance, Refusals, redact_origin, service_name, validate};
use crate::otlp::Signal;
use crate::otlp::logs::{self, LogFields, LogsRequest, ViewRecord};
use crate::pipeline::convert::{event_name, log_table};
use crate::pipeline::log_payload::LogPayloads;
use crate::telemetry::derived::{DerivedBatch, SeverityCounts, severity_index};
use crate::tenancy::{Resolved, TenantState};

impl Accept for LogsRequest {
    const SIGNAL: Signal = Signal::Logs;

    fn accept(&mut self, resolved: &[Resolved], into: &mut Acceptance) {
        // Accepted records are logged as OTLP (see `pipeline::log_payload`), not converted here.
        let mut payloads = LogPayloads::new(into.converter.received_at(), self.bytes().clone());
        let mut resources = std::mem::take(&mut self.resources);
        let mut attributes = Vec::new();
        for (r, (rl, res)) in resources.iter_mut().zip(resolved).enumerate() {
            let Some((tenant, state)) = res else { continue };
            let redactor = state.redactor.as_ref();
            let scopes = redact_origin(
                redactor,
                &mut rl.resource,
                rl.scopes.iter_mut().map(|s| s.scope.take()),
            );
            let policy = redactor.map_or("", |r| r.version());
            payloads.resource(tenant, policy, rl.resource.as_ref(), &rl.schema_url);
            let service = service_name(rl.resource.as_ref());
            let mut severities: SeverityCounts = Default::default();
            for (s, (sl, scope)) in rl.scopes.iter().zip(scopes).enumerate() {
                payloads.scope(scope.as_ref(), &sl.schema_url);
                let mut log = LogContext {
                    tenant,
                    state,
                    limits: into.limits(&state.policy),
                    refusals: &mut into.refusals,
                    derived: &mut into.derived,
                    severities: &mut severities,
                };
                for (i, range) in sl.records.iter().enumerate() {
                    let at = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]");
                    if log.refusals.over_records(&at) {
                        continue;
                    }
                    let raw = self.raw(range);
                    // Redaction rewrites records: those of a tenant with rules are decoded owned.
                    let view = match redactor {
                        None => logs::read_record(raw, &mut attributes),
                        Some(_) => None,
                    };
                    if let Some(view) = view {
                        let record = ViewRecord {
                            view: &view,
                            attributes: &attributes,
                        };
                        if let Some(table) = log.admit(&record, &at) {
                            payloads.record(table, range.clone());
                        }
                        continue;
                    }
                    match LogRecord::decode(raw) {
                        Ok(mut record) => {
                            if log.admit(&record, &at).is_some() {
                                if let Some(r) = redactor {
                                    r.log(&mut record);
                                }
                                // Stored where the record as redacted says (a rule may remove
                                // its `event.name`), as conversion at commit will read it.
                                payloads.owned_record(log_table(&record), &record);
                            }
                        }
                        Err(e) => log
                            .refusals
                            .refuse("invalid_record", || format!("{}: undecodable: {e}", at())),
                    }
                }
            }
            into.derived.logs(tenant, &service, &severities);
        }
        self.resources = resources;
        into.records.extend(payloads.finish());
    }
}

/// What accepting the log records of one scope needs.
struct LogContext<'c> {
    tenant: &'c TenantId,
    state: &'c TenantState,
    limits: validate::Limits,
    refusals: &'c mut Refusals,
    derived: &'c mut DerivedBatch,
    severities: &'c mut SeverityCounts,
}

impl LogContext<'_> {
    /// Checks the tenant may send this kind of record and that it can be stored, and counts it;
    /// the table it goes to, or `None` when it is refused.
    fn admit<R: LogFields>(&mut self, record: &R, at: &dyn Fn() -> String) -> Option<Table> {
        let policy = &self.state.policy;
        let name = event_name(record);
        let (enabled, signal) = if name.is_some() {
            (policy.signals.events, "events")
        } else {
            (policy.signals.logs, "logs")
        };
        if !enabled {
            let tenant = self.tenant;
            self.refusals.refuse("signal_disabled", || {
                format!("{}: tenant \"{tenant}\" may not send {signal}", at())
            });
            return None;
        }
        if let Err(problem) = validate::log(record, self.limits, at) {
            self.refusals.refuse("invalid_record", || problem);
            return None;
        }
        match name {
            Some(name) => {
                self.derived.event(self.tenant, name);
                Some(Table::Events)
            }
            None => {
                self.severities[severity_index(record.severity_number())] += 1;
                Some(Table::Logs)
            }
        }
    }
}
