use super::*;

fn errors(text: &str) -> Vec<(String, String)> {
    match parse(text) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(ConfigErrors(errors)) => errors.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

#[test]
fn empty_document_is_the_default() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(parse("# nothing\n").unwrap(), Config::default());
}

#[test]
fn example_file_loads_and_states_the_defaults() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tenantscope.example.yaml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn tenants_example_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tenants.example.yaml");
    std::fs::copy(&example, dir.path().join("tenants.yaml")).unwrap();
    std::fs::write(dir.path().join("main.yaml"), "tenants_file: tenants.yaml\n").unwrap();
    let config = Config::load(&dir.path().join("main.yaml")).unwrap();
    assert_eq!(config.tenants.len(), 2);
    assert!(config.auth_required());
    let acme = &config.tenants[&audit_store::TenantId::parse("acme").unwrap()];
    assert_eq!(acme.limits.records_per_second, Some(50_000));
    assert_eq!(acme.redaction.pseudonymize, ["user.id", "client.address"]);
}

#[test]
fn parses_every_kind_of_value() {
    let config = parse(
        r#"
listen:
  otlp_grpc: "[::1]:14317"
ingest:
  max_request_body_size: 1048576
  max_decompressed_body_size: 2MiB
  max_expanded_request_size: 32MiB
storage:
  data_dir: /var/lib/tenantscope
  max_file_age: 1s
  queue_capacity: 8
log:
  format: json
  level: tenantscope=debug,warn
"#,
    )
    .unwrap();
    assert_eq!(config.listen.otlp_grpc, "[::1]:14317".parse().unwrap());
    assert_eq!(config.ingest.max_request_body_size, 1 << 20);
    assert_eq!(config.ingest.max_decompressed_body_size, 2 << 20);
    assert_eq!(config.ingest.max_expanded_request_size, 32 << 20);
    assert_eq!(
        config.storage.data_dir,
        PathBuf::from("/var/lib/tenantscope")
    );
    assert_eq!(config.storage.max_file_age, Duration::from_secs(1));
    assert_eq!(config.storage.queue_capacity, 8);
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn reports_every_error_with_its_key_path() {
    let got = errors(
        r#"
listen:
  otlp_grpc: "localhost"
  otlp_htp: "127.0.0.1:1"
ingest:
  max_request_body_size: 0
  max_expanded_request_size: 2GiB
storage:
  max_file_age: soon
  queue_capacity: -1
  zstd_level: 40
log:
  format: xml
extra: 1
"#,
    );
    let golden = got
        .iter()
        .map(|(path, message)| format!("{path}: {message}\n"))
        .collect::<String>();
    let expected = r#"extra: unknown key; expected one of: listen, ingest, storage, log, auth, tenants, tenants_file, query, reload, metrics, tracing, audit
listen.otlp_htp: unknown key; expected one of: otlp_grpc, otlp_http, metrics, api, max_connections, max_header_size, header_read_timeout, idle_timeout, body_read_timeout, http2_max_concurrent_streams, http2_max_pending_accept_reset_streams, http2_max_local_error_reset_streams, keepalive_interval, keepalive_timeout, max_connection_age, max_connection_age_grace
listen.otlp_grpc: "localhost" is not an address like 127.0.0.1:4317 or [::1]:4317
ingest.max_request_body_size: must be greater than 0
ingest.max_expanded_request_size: must be at most 1024MiB
storage.max_file_age: "soon" is not a duration like 200ms or 5s: expected number at 0
storage.queue_capacity: expected a whole number, found number -1
storage.zstd_level: 40 is out of range 1..=22
log.format: "xml" is not a log format; expected text or json
"#;
    assert_eq!(golden, expected);
}

#[test]
fn rejects_non_mapping_sections_and_bad_yaml() {
    assert_eq!(
        errors("listen: 3\n"),
        vec![("listen".into(), "expected a mapping".into())]
    );
    let bad = errors("listen: [\n");
    assert_eq!(bad[0].0, "<document>");
    assert!(bad[0].1.starts_with("not valid YAML"), "{bad:?}");
}

#[test]
fn byte_sizes() {
    use super::walker::parse_byte_size;
    assert_eq!(parse_byte_size("512KiB"), Some(512 << 10));
    assert_eq!(parse_byte_size("16MiB"), Some(16 << 20));
    assert_eq!(parse_byte_size("1GB"), Some(1_000_000_000));
    assert_eq!(parse_byte_size("10"), Some(10));
    assert_eq!(parse_byte_size("0MiB"), None);
    assert_eq!(parse_byte_size("MiB"), None);
    assert_eq!(parse_byte_size("1 TiB"), None);
    assert_eq!(parse_byte_size("99999999999999999999GiB"), None);
}

const HASH_A: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
const HASH_B: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000002";

#[test]
fn parses_tenants() {
    let config = parse(&format!(
        r#"
auth:
  admin_keys: ["{HASH_B}"]
  max_failures_per_minute: 5
tenants:
  acme:
    keys:
      - hash: "{HASH_A}"
        roles: [ingest, query]
    signals: [logs, events]
    limits:
      records_per_second: 1000
      bytes_per_second: 1MiB
      bytes_burst: 4MiB
      max_attributes_per_record: 16
    redaction:
      drop_attributes: [password]
      replace: [{{pattern: '\d{{4}}', with: "[n]"}}]
      pseudonymize: [user.id]
      hmac_key_env: ACME_KEY
    retention: 400d
    durability: sync
  globex:
query:
  timeout: 5s
  memory_limit: 64MiB
reload:
  watch_interval: "off"
"#
    ))
    .unwrap();
    assert!(config.auth_required());
    assert_eq!(config.auth.max_failures_per_minute, 5);
    let acme = &config.tenants[&audit_store::TenantId::parse("acme").unwrap()];
    assert_eq!(acme.keys[0].hash, KeyHash::parse(HASH_A).unwrap());
    assert!(acme.keys[0].roles.ingest && acme.keys[0].roles.query);
    assert_eq!(
        acme.signals,
        Signals {
            logs: true,
            traces: false,
            events: true,
            metrics: false
        }
    );
    assert_eq!(acme.limits.records_per_second, Some(1000));
    assert_eq!(acme.limits.bytes_burst, Some(4 << 20));
    assert_eq!(acme.limits.max_attributes_per_record, 16);
    assert_eq!(
        acme.redaction.hmac_key,
        Some(SecretSource::Env("ACME_KEY".into()))
    );
    assert_eq!(acme.retention, Some(Duration::from_secs(400 * 86_400)));
    let globex = &config.tenants[&audit_store::TenantId::parse("globex").unwrap()];
    assert_eq!(globex, &TenantPolicy::default());
    assert_eq!(config.query.timeout, Duration::from_secs(5));
    assert_eq!(config.reload.watch_interval, None);
}

#[test]
fn reports_every_tenant_error() {
    let got = errors(&format!(
        r#"
auth:
  admin_keys: ["{HASH_A}", "md5:abc"]
tenants:
  "../x": {{}}
  acme:
    keys:
      - hash: "{HASH_A}"
        roles: [ingest, admin]
      - roles: [query]
      - hash: "{HASH_B}"
    signals: [logs, profiles]
    limits:
      records_burst: 10
      rate: 1
    redaction:
      replace: [{{pattern: "(unclosed"}}]
      pseudonymize: [user.id]
    durability: eventually
"#
    ));
    let golden = got
        .iter()
        .map(|(path, message)| format!("{path}: {message}\n"))
        .collect::<String>();
    let expected = r#"auth.admin_keys[1]: expected sha256:<64 hex digits> (see `tenantscope hash-key`)
tenants.../x: invalid tenant id: tenant id must start with an ASCII letter or digit
tenants.acme.keys[0].roles[1]: admin keys are global: list them under auth.admin_keys
tenants.acme.keys[1]: missing hash (sha256:<hex>, see `tenantscope hash-key`)
tenants.acme.keys[2]: missing roles (a list of ingest, query)
tenants.acme.signals[1]: unknown signal "profiles"; expected logs, traces, events or metrics
tenants.acme.limits.rate: unknown key; expected one of: records_per_second, records_burst, bytes_per_second, bytes_burst, max_attributes_per_record
tenants.acme.limits.records_burst: needs records_per_second
tenants.acme.redaction.replace[0].pattern: invalid regular expression: regex parse error:
    (unclosed
    ^
error: unclosed group
tenants.acme.redaction.pseudonymize: needs a key: set hmac_key_file or hmac_key_env
tenants.acme.durability: unknown durability class "eventually"; expected sync
tenants.acme.keys[0]: the same key is already used by auth.admin_keys
"#;
    assert_eq!(golden, expected);
}

#[test]
fn tenants_file_is_merged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.yaml"),
        format!("tenants_file: more.yaml\ntenants:\n  acme:\n    keys: [{{hash: \"{HASH_A}\", roles: [ingest]}}]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("more.yaml"),
        format!("globex:\n  keys: [{{hash: \"{HASH_B}\", roles: [query]}}]\n"),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("main.yaml")).unwrap();
    assert_eq!(config.tenants.len(), 2);
    // A key used twice across the two files is an error naming both places.
    std::fs::write(
        dir.path().join("more.yaml"),
        format!("globex:\n  keys: [{{hash: \"{HASH_A}\", roles: [query]}}]\nacme: {{}}\n"),
    )
    .unwrap();
    let err = Config::load(&dir.path().join("main.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("acme: tenant also listed in the main config file"),
        "{err}"
    );
    assert!(
        err.contains(
            "tenants.globex.keys[0]: the same key is already used by tenants.acme.keys[0]"
        ),
        "{err}"
    );
}

#[test]
fn query_threads_parse_and_are_bounded() {
    assert_eq!(parse("query:\n  threads: 4\n").unwrap().query.threads, 4);
    assert_eq!(
        errors("query:\n  threads: 0\n")
            .into_iter()
            .map(|(path, _)| path)
            .collect::<Vec<_>>(),
        ["query.threads"]
    );
}

#[test]
fn the_audit_section_and_the_instance_id_parse_and_are_bounded() {
    let config = parse(
        "audit:\n  checkpoint_interval: 10s\n  signing_key_file: /etc/ts/key\nstorage:\n  instance_id: collector-1.eu\n",
    )
    .unwrap();
    assert_eq!(config.audit.checkpoint_interval, Duration::from_secs(10));
    assert_eq!(
        config.audit.signing_key_file.as_deref(),
        Some(std::path::Path::new("/etc/ts/key"))
    );
    assert_eq!(
        config.storage.instance_id.as_deref(),
        Some("collector-1.eu")
    );
    assert_eq!(
        errors("audit:\n  checkpoint_interval: 10ms\n  key: x\nstorage:\n  instance_id: a b+c\n"),
        [
            (
                "storage.instance_id".to_owned(),
                "\"a b+c\" is not an instance id (letters, digits, '.', '-', '_'; at most 253)"
                    .to_owned()
            ),
            (
                "audit.key".to_owned(),
                "unknown key; expected one of: checkpoint_interval, signing_key_file, retention_interval"
                    .to_owned()
            ),
            (
                "audit.checkpoint_interval".to_owned(),
                "10ms is out of range 1s..=1day".to_owned()
            ),
        ]
    );
}

#[test]
fn connection_limits_parse_with_their_bounds() {
    let config = parse(
        r#"
listen:
  max_connections: 50000
  max_header_size: 16KiB
  header_read_timeout: 5s
  idle_timeout: 2m
  body_read_timeout: 90s
  http2_max_concurrent_streams: 64
  http2_max_pending_accept_reset_streams: 10
  keepalive_interval: 30s
  max_connection_age: 10m
  max_connection_age_grace: 0s
"#,
    )
    .unwrap();
    let c = &config.listen.connections;
    assert_eq!(c.max_connections, 50_000);
    assert_eq!(c.max_header_size, 16 << 10);
    assert_eq!(c.header_read_timeout, Duration::from_secs(5));
    assert_eq!(c.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.body_read_timeout, Duration::from_secs(90));
    assert_eq!(c.http2_max_concurrent_streams, 64);
    assert_eq!(c.http2_max_pending_accept_reset_streams, 10);
    assert_eq!(c.keepalive_interval, Duration::from_secs(30));
    assert_eq!(c.max_connection_age, Some(Duration::from_secs(600)));
    assert_eq!(c.max_connection_age_grace, Duration::ZERO);
    let got =
        errors("listen:\n  max_connections: 0\n  max_header_size: 100\n  idle_timeout: 1ms\n");
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listen.max_connections",
            "listen.max_header_size",
            "listen.idle_timeout"
        ]
    );
}

#[test]
fn tenant_ids_differing_only_in_case_are_refused() {
    let got = errors("tenants:\n  acme: {}\n  ACME: {}\n  globex: {}\n");
    assert_eq!(
        got,
        [(
            "tenants.ACME".to_owned(),
            "differs from tenant acme only in case".to_owned()
        )]
    );
}
