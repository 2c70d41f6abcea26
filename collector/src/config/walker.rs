//! The ground floor of config parsing: errors with their key paths, the `Walker` that collects
//! them while the sections are read, and readers of single values (strings, paths, integers,
//! durations, byte sizes, addresses). `parse.rs` and `tenants.rs` both build on it; it uses
//! neither.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `storage.max_file_age`.
    pub path: String,
    pub message: String,
}

/// Every problem found in a config file, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The YAML document of `text`, or the one error saying it is not YAML.
pub(super) fn yaml(text: &str) -> Result<Value, ConfigErrors> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: "<document>".into(),
            message: format!("not valid YAML: {e}"),
        }])
    })
}

#[derive(Default)]
pub(super) struct Walker {
    pub(super) errors: Vec<ConfigError>,
}

impl Walker {
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn known_keys(&mut self, map: &Mapping, parent: &str, known: &[&str]) {
        for key in map.keys() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => self.error(
                    &join(parent, k),
                    format!("unknown key; expected one of: {}", known.join(", ")),
                ),
                None => self.error(parent, format!("keys must be strings, found {key:?}")),
            }
        }
    }

    pub(super) fn section(&mut self, map: &Mapping, parent: &str, key: &str) -> Option<Mapping> {
        match map.get(key)? {
            Value::Mapping(m) => Some(m.clone()),
            Value::Null => None,
            _ => {
                self.error(&join(parent, key), "expected a mapping");
                None
            }
        }
    }

    /// Parses `map[key]` into `slot` when present; records an error otherwise left default.
    pub(super) fn field<T>(
        &mut self,
        map: &Mapping,
        parent: &str,
        key: &str,
        slot: &mut T,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) {
        let Some(value) = map.get(key) else { return };
        match parse(value) {
            Ok(v) => *slot = v,
            Err(message) => self.error(&join(parent, key), message),
        }
    }
}

pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn string(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, found {}", describe(value)))
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

pub(super) fn socket_addr(value: &Value) -> Result<SocketAddr, String> {
    let s = string(value)?;
    s.parse()
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:4317 or [::1]:4317"))
}

pub(super) fn path(value: &Value) -> Result<PathBuf, String> {
    let s = string(value)?;
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(PathBuf::from(s))
}

pub(super) fn integer(value: &Value, min: u64, max: u64) -> Result<usize, String> {
    let n = value
        .as_u64()
        .ok_or_else(|| format!("expected a whole number, found {}", describe(value)))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    usize::try_from(n).map_err(|_| format!("{n} is too large for this machine"))
}

pub(super) fn duration(value: &Value, min: Duration, max: Duration) -> Result<Duration, String> {
    let s = string(value)?;
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 200ms or 5s: {e}"))?;
    if d < min || d > max {
        return Err(format!(
            "{s} is out of range {}..={}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// A byte size: a whole number of bytes, or a string with a unit (`512KiB`, `16MiB`, `1GB`).
pub(crate) fn byte_size(value: &Value) -> Result<u64, String> {
    if let Some(n) = value.as_u64() {
        return if n == 0 {
            Err("must be greater than 0".into())
        } else {
            Ok(n)
        };
    }
    let s = string(value)?;
    parse_byte_size(s).ok_or_else(|| {
        format!("{s:?} is not a size like 1048576, 512KiB, 16MiB or 1GB (and must be > 0)")
    })
}

pub(crate) fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(multiplier).filter(|&b| b > 0)
}

/// An instance id: what a host name may hold (it becomes part of a checkpoint's origin line).
pub(crate) fn instance_id(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an instance id (letters, digits, '.', '-', '_'; at most 253)"
        ))
    }
}

/// Parses each item of a YAML list with `item`; errors name `path[index]`.
pub(super) fn list<T>(
    w: &mut Walker,
    value: &Value,
    path: &str,
    mut item: impl FnMut(&mut Walker, &str, &Value) -> Option<T>,
) -> Vec<T> {
    let Value::Sequence(items) = value else {
        w.error(path, format!("expected a list, found {}", describe(value)));
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, v)| item(w, &format!("{path}[{i}]"), v))
        .collect()
}
