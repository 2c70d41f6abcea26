use super::*;

fn attrs(tenant: Option<&str>) -> Vec<KeyValue> {
    let mut attrs = vec![KeyValue {
        key: "service.name".into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("checkout".into())),
        }),
    }];
    if let Some(t) = tenant {
        attrs.push(KeyValue {
            key: TENANT_ATTRIBUTE.into(),
            key_strindex: 0,
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(t.into())),
            }),
        });
    }
    attrs
}

fn authenticator(yaml: &str) -> Authenticator {
    let config = crate::config::parse(yaml).unwrap();
    Authenticator::new(Tenants::new(Directory::build(&config).unwrap()), 3)
}

fn trusted() -> Access {
    authenticator("").authenticate(None, None).unwrap()
}

fn check(header: Option<&str>, attribute: Option<&str>, expected: Result<&str, &str>) {
    let got = trusted()
        .for_ingest(header.map(str::as_bytes))
        .and_then(|rt| rt.resolve(&attrs(attribute)));
    let got = got
        .as_ref()
        .map(|t| t.0.as_str())
        .map_err(|e| e.to_string());
    assert_eq!(
        got,
        expected.map_err(str::to_owned),
        "header {header:?}, attribute {attribute:?}"
    );
}

#[test]
fn resolution_table() {
    check(Some("acme"), None, Ok("acme"));
    check(None, Some("acme"), Ok("acme"));
    check(Some("acme"), Some("acme"), Ok("acme"));
    check(
        Some("acme"),
        Some("globex"),
        Err(r#"resource attribute tenant.id "globex" contradicts the X-Scope-OrgID header "acme""#),
    );
    check(
        None,
        None,
        Err(
            "no tenant: set the X-Scope-OrgID header (gRPC metadata x-scope-orgid) or the \
             resource attribute tenant.id on every resource",
        ),
    );
    check(
        Some("../x"),
        None,
        Err(
            r#"invalid tenant id "../x" in the X-Scope-OrgID header: tenant id must start with an ASCII letter or digit"#,
        ),
    );
    check(
        None,
        Some("a/b"),
        Err(
            r#"invalid tenant id "a/b" in the resource attribute tenant.id: tenant id contains '/'; only ASCII letters, digits, '.', '_' and '-' are allowed"#,
        ),
    );
    check(
        Some(""),
        None,
        Err(r#"invalid tenant id "" in the X-Scope-OrgID header: tenant id is empty"#),
    );
}

#[test]
fn non_string_tenant_attribute_is_refused() {
    let attrs = vec![KeyValue {
        key: TENANT_ATTRIBUTE.into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(7)),
        }),
    }];
    let rt = trusted().for_ingest(None).unwrap();
    assert_eq!(rt.resolve(&attrs).unwrap_err(), TenancyError::NotAString);
}

fn keyed() -> Authenticator {
    let h = |k: &str| directory::hash_key(k.as_bytes());
    authenticator(&format!(
        r#"
auth:
  admin_keys: ["{admin}"]
tenants:
  acme:
    keys:
      - {{hash: "{ai}", roles: [ingest]}}
      - {{hash: "{aq}", roles: [query]}}
  globex:
    keys: [{{hash: "{gi}", roles: [ingest, query]}}]
  initech:
    enabled: false
    keys: [{{hash: "{ii}", roles: [ingest, query]}}]
"#,
        admin = h("admin-key"),
        ai = h("acme-ingest"),
        aq = h("acme-query"),
        gi = h("globex-key"),
        ii = h("initech-key"),
    ))
}

fn ingest(
    auth: &Authenticator,
    authorization: Option<&str>,
    header: Option<&str>,
    attribute: Option<&str>,
) -> Result<String, String> {
    auth.authenticate(authorization.map(str::as_bytes), None)
        .and_then(|a| a.for_ingest(header.map(str::as_bytes)))
        .and_then(|rt| rt.resolve(&attrs(attribute)))
        .map(|(t, _)| t.to_string())
        .map_err(|e| e.to_string())
}

#[test]
fn keys_bind_the_tenant() {
    let auth = keyed();
    let ok = |key, header, attr, want: &str| {
        assert_eq!(ingest(&auth, key, header, attr).as_deref(), Ok(want));
    };
    let err = |key, header, attr, want: &str| {
        let got = ingest(&auth, key, header, attr).unwrap_err();
        assert!(got.contains(want), "{key:?} {header:?} {attr:?}: {got}");
    };
    ok(Some("Bearer acme-ingest"), None, None, "acme");
    ok(
        Some("bearer acme-ingest"),
        Some("acme"),
        Some("acme"),
        "acme",
    );
    err(
        None,
        None,
        Some("acme"),
        "authentication required: send Authorization",
    );
    err(Some("Bearer nope"), None, None, "unknown API key");
    err(Some("Basic YWJj"), None, None, "must be Bearer");
    err(
        Some("Bearer acme-ingest"),
        Some("globex"),
        None,
        r#"the X-Scope-OrgID header names tenant "globex" but the API key belongs to tenant "acme""#,
    );
    err(
        Some("Bearer acme-ingest"),
        None,
        Some("globex"),
        r#"the resource attribute tenant.id names tenant "globex""#,
    );
    err(Some("Bearer acme-query"), None, None, "has no ingest role");
    err(
        Some("Bearer initech-key"),
        None,
        None,
        r#"tenant "initech" is disabled"#,
    );
    // An admin key is a trusted gateway: the tenant comes from the request.
    ok(Some("Bearer admin-key"), Some("globex"), None, "globex");
    ok(Some("Bearer admin-key"), None, Some("acme"), "acme");
    err(
        Some("Bearer admin-key"),
        None,
        Some("initech"),
        "is disabled",
    );

    let query = |key: &str, named: Option<&str>| {
        auth.authenticate(Some(key.as_bytes()), None)
            .and_then(|a| a.for_query(named))
            .map(|t| t.to_string())
            .map_err(|e| e.to_string())
    };
    assert_eq!(query("Bearer acme-query", None).as_deref(), Ok("acme"));
    assert_eq!(
        query("Bearer acme-query", Some("acme")).as_deref(),
        Ok("acme")
    );
    assert!(
        query("Bearer acme-query", Some("globex"))
            .unwrap_err()
            .contains("belongs to tenant")
    );
    assert!(
        query("Bearer acme-ingest", None)
            .unwrap_err()
            .contains("no query role")
    );
    assert_eq!(
        query("Bearer admin-key", Some("globex")).as_deref(),
        Ok("globex")
    );
    assert!(
        query("Bearer admin-key", None)
            .unwrap_err()
            .contains("no tenant")
    );
}

#[test]
fn failed_authentications_are_throttled() {
    let auth = keyed();
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(
            auth.authenticate(Some(b"Bearer wrong"), Some(ip))
                .unwrap_err(),
            TenancyError::Unauthenticated("unknown API key")
        );
    }
    // Now even a right key from that address waits: that is what stops guessing.
    assert!(matches!(
        auth.authenticate(Some(b"Bearer acme-ingest"), Some(ip)),
        Err(TenancyError::Throttled { .. })
    ));
    let other: IpAddr = "192.0.2.8".parse().unwrap();
    assert!(
        auth.authenticate(Some(b"Bearer acme-ingest"), Some(other))
            .is_ok()
    );
}

#[test]
fn a_tenant_differing_from_a_listed_one_only_in_case_is_refused() {
    let access = authenticator("tenants:\n  acme: {}\n")
        .authenticate(None, None)
        .unwrap();
    for (header, attribute) in [(Some("ACME"), None), (None, Some("Acme"))] {
        let got = access
            .for_ingest(header.map(str::as_bytes))
            .and_then(|rt| rt.resolve(&attrs(attribute)));
        let error = got.unwrap_err();
        assert!(matches!(error, TenancyError::CaseTwin { .. }), "{error}");
        assert!(error.to_string().contains("only in case"), "{error}");
    }
    let got = access
        .for_ingest(Some(b"acme"))
        .and_then(|rt| rt.resolve(&attrs(None)));
    assert_eq!(got.unwrap().0.as_str(), "acme");
    assert!(access.for_query(Some("aCme")).is_err());
}

/// On a data directory that ignores case, tenants that are not configured cannot be case twins
/// either: the first id seen (or stored) holds the name, for ingest and queries, across reloads.
#[test]
fn on_a_store_ignoring_case_any_two_ids_differing_only_in_case_are_refused() {
    let config = crate::config::parse("tenants:\n  acme: {}\n").unwrap();
    let mut directory = Directory::build(&config).unwrap();
    let stored = [TenantId::parse("Globex").unwrap()];
    directory.fold_case(Arc::new(CaseFold::new(stored)));
    let auth = Authenticator::new(Tenants::new(directory), 3);
    let ingest = |tenant: &str| {
        let access = auth.authenticate(None, None).unwrap();
        access
            .for_ingest(Some(tenant.as_bytes()))
            .and_then(|rt| rt.resolve(&attrs(None)))
            .map(|(t, _)| t.to_string())
    };
    assert_eq!(ingest("Globex").unwrap(), "Globex");
    let error = ingest("globex").unwrap_err();
    assert!(error.to_string().contains("stored"), "{error}");
    assert_eq!(ingest("initech").unwrap(), "initech");
    assert!(
        ingest("INITECH").is_err(),
        "the first id seen holds the name"
    );
    assert!(
        ingest("ACME")
            .unwrap_err()
            .to_string()
            .contains("configured")
    );
    let access = auth.authenticate(None, None).unwrap();
    assert!(access.for_query(Some("iniTech")).is_err());
    // A reload keeps what was seen.
    auth.tenants().replace(Directory::build(&config).unwrap());
    assert!(ingest("Initech").is_err());
    assert_eq!(ingest("initech").unwrap(), "initech");
}

/// On a filesystem that keeps case, tenants that are not configured are told apart by case.
#[test]
fn without_case_folding_unlisted_ids_differing_in_case_are_two_tenants() {
    let auth = authenticator("tenants:\n  acme: {}\n");
    let access = auth.authenticate(None, None).unwrap();
    for tenant in ["initech", "Initech"] {
        let got = access
            .for_ingest(Some(tenant.as_bytes()))
            .and_then(|rt| rt.resolve(&attrs(None)));
        assert_eq!(got.unwrap().0.as_str(), tenant);
    }
}
