//! What other modules' tests need of log payloads: a request logged as ingest logs it and read
//! back as a commit reads it.

use audit_store::{Table, TenantId};
use bytes::Bytes;

use super::{LogPayloads, Logged};
use crate::otlp::logs::LogsRequest;

/// The records of `request` (an `ExportLogsServiceRequest` of one resource and one scope) for
/// acme's `logs`, each logged as the bytes it is (as ingest logs records it read in place), and
/// read back as a commit reads them.
pub(crate) fn logged_request(request: Vec<u8>, received_at: i64) -> Logged {
    let request = LogsRequest::parse(Bytes::from(request)).unwrap();
    let mut payloads = LogPayloads::new(received_at, request.bytes().clone());
    let resource = &request.resources[0];
    payloads.resource(
        &TenantId::parse("acme").unwrap(),
        "",
        resource.resource.as_ref(),
        "",
    );
    payloads.scope(resource.scopes[0].scope.as_ref(), "");
    for range in &request.resources[0].scopes[0].records {
        payloads.record(Table::Logs, range.clone());
    }
    Logged::parse(payloads.finish().pop().unwrap().payload).unwrap()
}
