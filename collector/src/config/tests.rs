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
fn parses_every_kind_of_value() {
    let config = parse(
        r#"
listen:
  otlp_grpc: "[::1]:14317"
ingest:
  max_request_body_size: 1048576
  max_decompressed_body_size: 2MiB
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
    let expected = r#"extra: unknown key; expected one of: listen, ingest, storage, log
listen.otlp_htp: unknown key; expected one of: otlp_grpc, otlp_http, metrics, api
listen.otlp_grpc: "localhost" is not an address like 127.0.0.1:4317 or [::1]:4317
ingest.max_request_body_size: must be greater than 0
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
    use super::parse::parse_byte_size;
    assert_eq!(parse_byte_size("512KiB"), Some(512 << 10));
    assert_eq!(parse_byte_size("16MiB"), Some(16 << 20));
    assert_eq!(parse_byte_size("1GB"), Some(1_000_000_000));
    assert_eq!(parse_byte_size("10"), Some(10));
    assert_eq!(parse_byte_size("0MiB"), None);
    assert_eq!(parse_byte_size("MiB"), None);
    assert_eq!(parse_byte_size("1 TiB"), None);
    assert_eq!(parse_byte_size("99999999999999999999GiB"), None);
}
