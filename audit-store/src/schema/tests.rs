use super::*;

/// Renders a schema one column a line: `name: type [not null]`.
fn render(table: Table) -> String {
    let schema = table.schema();
    let mut out = format!("table {}\n", table.name());
    for field in schema.fields() {
        let null = if field.is_nullable() { "" } else { " not null" };
        out.push_str(&format!(
            "  {}: {}{}\n",
            field.name(),
            field.data_type(),
            null
        ));
    }
    out
}

#[test]
fn schemas_match_golden_file() {
    let actual: String = Table::ALL.into_iter().map(render).collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema/schema.golden");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "the Arrow schema changed; if deliberate, rerun with UPDATE_GOLDEN=1 and commit the golden file"
    );
}

#[test]
fn table_names_round_trip() {
    for table in Table::ALL {
        assert_eq!(Table::from_name(table.name()), Some(table));
    }
    assert_eq!(Table::from_name("metrics"), None);
}
