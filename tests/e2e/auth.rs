//! The spoofing matrix: every way of claiming another tenant's identity, over OTLP/gRPC,
//! OTLP/HTTP (protobuf and JSON) and the query API, gets its documented status, and nothing is
//! written to or read from another tenant.

use http::StatusCode;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use tonic::Code;

use crate::harness::{
    ACME_INGEST, ACME_QUERY, ADMIN_KEY, Daemon, GLOBEX_KEY, INITECH_KEY, LOGS_EXPORT,
    answer_before_the_body, api_query, bearer, grpc_raw, json_lines, keyed, post, query_dir,
};

/// One log record per resource; each resource names the given tenant (or none).
fn logs_json(resources: &[Option<&str>]) -> serde_json::Value {
    let resource_logs: Vec<_> = resources
        .iter()
        .map(|tenant| {
            let attributes: Vec<_> = tenant
                .iter()
                .map(|t| serde_json::json!({"key": "tenant.id", "value": {"stringValue": t}}))
                .collect();
            serde_json::json!({
                "resource": {"attributes": attributes},
                "scopeLogs": [{"logRecords": [{"body": {"stringValue": "spoof test"}}]}]
            })
        })
        .collect();
    serde_json::json!({ "resourceLogs": resource_logs })
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// Sends one request; returns the HTTP status, or the gRPC code mapped onto the same table.
async fn send(
    d: &Daemon,
    via: Via,
    authorization: Option<&str>,
    header: Option<&str>,
    resources: &[Option<&str>],
) -> (Option<StatusCode>, Option<Code>) {
    let json = logs_json(resources);
    match via {
        Via::Grpc => {
            let request: ExportLogsServiceRequest = serde_json::from_value(json).unwrap();
            let mut metadata = Vec::new();
            if let Some(a) = authorization {
                metadata.push(("authorization", a));
            }
            if let Some(h) = header {
                metadata.push(("x-scope-orgid", h));
            }
            let result = grpc_raw(d, LOGS_EXPORT, &metadata, request.encode_to_vec(), false).await;
            (None, Some(result.map_or_else(|s| s.code(), |_| Code::Ok)))
        }
        Via::HttpProtobuf | Via::HttpJson => {
            let (content_type, body) = match via {
                Via::HttpJson => ("application/json", json.to_string().into_bytes()),
                _ => {
                    let request: ExportLogsServiceRequest = serde_json::from_value(json).unwrap();
                    ("application/x-protobuf", request.encode_to_vec())
                }
            };
            let mut headers = vec![("content-type", content_type)];
            if let Some(a) = authorization {
                headers.push(("authorization", a));
            }
            if let Some(h) = header {
                headers.push(("x-scope-orgid", h));
            }
            let (status, _, _) = post(d.http, "/v1/logs", &headers, body).await;
            (Some(status), None)
        }
    }
}

#[tokio::test]
async fn ingest_spoofing_matrix() {
    let mut d = Daemon::start_with(keyed).await;
    let long = "t".repeat(200);
    let acme = bearer(ACME_INGEST);
    let acme_query = bearer(ACME_QUERY);
    let initech = bearer(INITECH_KEY);
    let admin = bearer(ADMIN_KEY);
    use StatusCode as S;
    // (case, authorization, X-Scope-OrgID, resources' tenant.id, HTTP status, gRPC code)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Vec<Option<&'a str>>,
        StatusCode,
        Code,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "no credential",
            None,
            Some("acme"),
            vec![None],
            S::UNAUTHORIZED,
            Code::Unauthenticated,
        ),
        (
            "wrong key",
            Some("Bearer not-a-key-00000000"),
            None,
            vec![None],
            S::UNAUTHORIZED,
            Code::Unauthenticated,
        ),
        (
            "not a bearer credential",
            Some("Basic YWNtZTpwdw=="),
            None,
            vec![None],
            S::UNAUTHORIZED,
            Code::Unauthenticated,
        ),
        (
            "key of A, header B",
            Some(&acme),
            Some("globex"),
            vec![None],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "key of A, attribute B",
            Some(&acme),
            None,
            vec![Some("globex")],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "key of A, records of A and B",
            Some(&acme),
            None,
            vec![Some("acme"), Some("globex")],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "query key used to ingest",
            Some(&acme_query),
            None,
            vec![None],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "disabled tenant",
            Some(&initech),
            None,
            vec![None],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "slash in header",
            Some(&acme),
            Some("a/b"),
            vec![None],
            S::BAD_REQUEST,
            Code::InvalidArgument,
        ),
        (
            "dot-dot in header",
            Some(&acme),
            Some(".."),
            vec![None],
            S::BAD_REQUEST,
            Code::InvalidArgument,
        ),
        (
            "200 chars in header",
            Some(&acme),
            Some(&long),
            vec![None],
            S::BAD_REQUEST,
            Code::InvalidArgument,
        ),
        (
            "NUL in attribute",
            Some(&acme),
            None,
            vec![Some("ac\u{0}me")],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "unicode in attribute",
            Some(&acme),
            None,
            vec![Some("acmé")],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "dot-dot in attribute",
            Some(&acme),
            None,
            vec![Some("../globex")],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        (
            "admin key, invalid attribute",
            Some(&admin),
            None,
            vec![Some("a/b")],
            S::BAD_REQUEST,
            Code::InvalidArgument,
        ),
        (
            "admin key, disabled tenant",
            Some(&admin),
            Some("initech"),
            vec![None],
            S::FORBIDDEN,
            Code::PermissionDenied,
        ),
        // Accepted: the key's own tenant, named or not; an admin key as a gateway.
        ("key of A", Some(&acme), None, vec![None], S::OK, Code::Ok),
        (
            "key of A, header and attribute A",
            Some(&acme),
            Some("acme"),
            vec![Some("acme")],
            S::OK,
            Code::Ok,
        ),
        (
            "admin key naming B",
            Some(&admin),
            Some("globex"),
            vec![None],
            S::OK,
            Code::Ok,
        ),
    ];
    for via in [Via::Grpc, Via::HttpProtobuf, Via::HttpJson] {
        for (name, authorization, header, resources, status, code) in &cases {
            let (got_status, got_code) = send(&d, via, *authorization, *header, resources).await;
            match via {
                Via::Grpc => assert_eq!(got_code, Some(*code), "{via:?} {name}"),
                _ => assert_eq!(got_status, Some(*status), "{via:?} {name}"),
            }
        }
    }
    // Two accepted acme requests and one admin-for-globex request per transport; nothing else.
    assert_eq!(d.count("acme", "logs").await, 6);
    assert_eq!(d.count("globex", "logs").await, 3);
    assert_eq!(d.count("initech", "logs").await, 0);
    let rows = query_dir(d.dir.path(), "acme", "SELECT DISTINCT tenant_id FROM logs").await;
    assert_eq!(rows, vec![serde_json::json!({"tenant_id": "acme"})]);
    let rejected = |transport: &str, reason: &str| {
        format!(
            "tenantscope_ingest_requests_rejected_total{{transport=\"{transport}\",signal=\"logs\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(d.metric(&rejected("grpc", "unauthenticated")).await, 3.0);
    assert_eq!(d.metric(&rejected("http", "unauthenticated")).await, 6.0);
    assert_eq!(d.metric(&rejected("grpc", "tenant_mismatch")).await, 6.0);
    assert_eq!(d.metric(&rejected("grpc", "forbidden")).await, 3.0);
    d.stop().await;
}

#[tokio::test]
async fn failed_authentications_are_throttled_per_address() {
    let mut d = Daemon::start_with(|c| {
        keyed(c);
        c.auth.max_failures_per_minute = 3;
    })
    .await;
    let wrong = bearer("guess-000000000000000");
    for _ in 0..3 {
        let (status, _) = send(&d, Via::HttpJson, Some(&wrong), None, &[None]).await;
        assert_eq!(status, Some(StatusCode::UNAUTHORIZED));
    }
    // The allowance is spent: even the right key waits now (that is what stops guessing).
    let acme = bearer(ACME_INGEST);
    let body = logs_json(&[None]).to_string().into_bytes();
    let headers = [
        ("content-type", "application/json"),
        ("authorization", &acme[..]),
    ];
    let (status, headers, _) = post(d.http, "/v1/logs", &headers, body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    let (_, code) = send(&d, Via::Grpc, Some(&acme), None, &[None]).await;
    assert_eq!(code, Some(Code::ResourceExhausted));
    d.stop().await;
}

/// An unknown key is refused from the headers alone: a request that announces 60 MiB (within
/// `ingest.max_request_body_size` here) gets its 401 after only 64 KiB were sent; the daemon never
/// waits for the rest. Then it still serves a good request.
#[tokio::test]
async fn an_unknown_key_is_refused_before_its_body_is_read() {
    let mut d = Daemon::start_with(|c| {
        keyed(c);
        c.ingest.max_request_body_size = 64 << 20;
    })
    .await;
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Authorization", "Bearer guess-0000000000000000"),
    ];
    let answer = answer_before_the_body(d.http, &headers, 60 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Never decoded either: garbage under an unknown key is UNAUTHENTICATED, not malformed, on
    // both transports (decoding first would answer 400 / INVALID_ARGUMENT).
    let garbage = vec![0xff; 4096];
    let wrong = bearer("guess-0000000000000000");
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("authorization", &wrong[..]),
    ];
    let (status, _, _) = post(d.http, "/v1/logs", &headers, garbage.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let metadata = [("authorization", &wrong[..])];
    let refused = grpc_raw(&d, LOGS_EXPORT, &metadata, garbage.clone(), false).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let acme = bearer(ACME_INGEST);
    let metadata = [("authorization", &acme[..])];
    let malformed = grpc_raw(&d, LOGS_EXPORT, &metadata, garbage, false).await;
    assert_eq!(malformed.unwrap_err().code(), Code::InvalidArgument);
    let (status, _) = send(&d, Via::HttpJson, Some(&acme), None, &[None]).await;
    assert_eq!(status, Some(StatusCode::OK));
    d.stop().await;
}

/// Ingests `n` records for a tenant with its key, over HTTP/JSON.
async fn ingest(d: &Daemon, key: &str, n: usize) {
    let resources = vec![None; n];
    let (status, _) = send(d, Via::HttpJson, Some(&bearer(key)), None, &resources).await;
    assert_eq!(status, Some(StatusCode::OK));
}

#[tokio::test]
async fn query_api_spoofing_matrix() {
    let mut d = Daemon::start_with(keyed).await;
    ingest(&d, ACME_INGEST, 3).await;
    ingest(&d, GLOBEX_KEY, 2).await;
    // The admin endpoints want an admin key.
    let (status, _, _) = post(d.api, "/admin/flush", &[], vec![]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let acme_query = bearer(ACME_QUERY);
    let (status, _, _) = post(
        d.api,
        "/admin/flush",
        &[("authorization", &acme_query[..])],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin = bearer(ADMIN_KEY);
    let (status, _, _) = post(
        d.api,
        "/admin/flush",
        &[("authorization", &admin[..])],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let sql = "SELECT tenant_id FROM logs";
    let ask = |key: Option<&'static str>, tenant: Option<&str>, header: Option<&'static str>| {
        let mut body = serde_json::json!({ "sql": sql });
        if let Some(t) = tenant {
            body["tenant"] = t.into();
        }
        let d = &d;
        async move {
            let extra: Vec<(&str, &str)> =
                header.map(|h| ("x-scope-orgid", h)).into_iter().collect();
            api_query(d, key, body, &extra).await
        }
    };
    let tenants_of = |body: &[u8]| -> Vec<String> {
        json_lines(body)
            .iter()
            .map(|r| r["tenant_id"].as_str().unwrap().to_owned())
            .collect()
    };
    use StatusCode as S;
    // (case, key, tenant in the body, X-Scope-OrgID, status)
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<String>,
        Option<&'static str>,
        StatusCode,
    );
    let refused: Vec<Case> = vec![
        (
            "no credential",
            None,
            Some("acme".into()),
            None,
            S::UNAUTHORIZED,
        ),
        (
            "wrong key",
            Some("wrong-key-0000000000"),
            None,
            None,
            S::UNAUTHORIZED,
        ),
        (
            "key of A naming B in the body",
            Some(ACME_QUERY),
            Some("globex".into()),
            None,
            S::FORBIDDEN,
        ),
        (
            "key of A naming B in the header",
            Some(ACME_QUERY),
            None,
            Some("globex"),
            S::FORBIDDEN,
        ),
        (
            "ingest key used to query",
            Some(ACME_INGEST),
            None,
            None,
            S::FORBIDDEN,
        ),
        (
            "disabled tenant",
            Some(INITECH_KEY),
            None,
            None,
            S::FORBIDDEN,
        ),
        (
            "admin naming no tenant",
            Some(ADMIN_KEY),
            None,
            None,
            S::BAD_REQUEST,
        ),
        (
            "slash",
            Some(ADMIN_KEY),
            Some("a/b".into()),
            None,
            S::BAD_REQUEST,
        ),
        (
            "dot-dot",
            Some(ADMIN_KEY),
            Some("..".into()),
            None,
            S::BAD_REQUEST,
        ),
        (
            "path traversal",
            Some(ADMIN_KEY),
            Some("../globex".into()),
            None,
            S::BAD_REQUEST,
        ),
        (
            "NUL",
            Some(ADMIN_KEY),
            Some("glo\u{0}bex".into()),
            None,
            S::BAD_REQUEST,
        ),
        (
            "unicode",
            Some(ADMIN_KEY),
            Some("glöbex".into()),
            None,
            S::BAD_REQUEST,
        ),
        (
            "200 chars",
            Some(ADMIN_KEY),
            Some("g".repeat(200)),
            None,
            S::BAD_REQUEST,
        ),
    ];
    for (name, key, tenant, header, status) in refused {
        let (got, _, body) = ask(key, tenant.as_deref(), header).await;
        assert_eq!(got, status, "{name}: {body:?}");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(error["error"].as_str().is_some(), "{name}: {error}");
    }
    let (status, _, body) = ask(Some(ACME_QUERY), None, None).await;
    assert_eq!(status, S::OK);
    assert_eq!(tenants_of(&body), ["acme"; 3]);
    let (status, _, body) = ask(Some(ACME_QUERY), Some("acme"), None).await;
    assert_eq!((status, tenants_of(&body).len()), (S::OK, 3));
    let (status, _, body) = ask(Some(GLOBEX_KEY), None, None).await;
    assert_eq!(
        (status, tenants_of(&body)),
        (S::OK, vec!["globex".to_owned(); 2])
    );
    let (status, _, body) = ask(Some(ADMIN_KEY), Some("globex"), None).await;
    assert_eq!((status, tenants_of(&body).len()), (S::OK, 2));
    let (status, _, body) = ask(Some(ADMIN_KEY), None, Some("acme")).await;
    assert_eq!((status, tenants_of(&body).len()), (S::OK, 3));
    assert_eq!(
        d.metric("tenantscope_query_requests_total{result=\"forbidden\"}")
            .await,
        4.0
    );
    d.stop().await;
}
