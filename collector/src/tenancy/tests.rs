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

fn check(header: Option<&str>, attribute: Option<&str>, expected: Result<&str, &str>) {
    let got = RequestTenant::from_header(header.map(str::as_bytes))
        .and_then(|rt| rt.resolve(&attrs(attribute)));
    let got = got.as_ref().map(|t| t.as_str()).map_err(|e| e.to_string());
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
    let rt = RequestTenant::from_header(None).unwrap();
    assert_eq!(rt.resolve(&attrs), Err(TenancyError::NotAString));
}
