//! A tenant's `redaction` section: attributes to drop, pseudonymise or replace, with the
//! secret that keys pseudonyms named by its source.

use serde_yaml_ng::{Mapping, Value};

use super::policy::{Pattern, Redaction, Replacement, SecretSource};
use super::walker::{Walker, join, list, path, string};

pub(super) fn redaction(w: &mut Walker, m: &Mapping, p: &str) -> Redaction {
    w.known_keys(
        m,
        p,
        &[
            "drop_attributes",
            "replace",
            "pseudonymize",
            "hmac_key_file",
            "hmac_key_env",
        ],
    );
    let r = Redaction {
        drop_attributes: names(w, m, p, "drop_attributes"),
        pseudonymize: names(w, m, p, "pseudonymize"),
        replace: m
            .get("replace")
            .map_or_else(Vec::new, |v| list(w, v, &join(p, "replace"), replacement)),
        hmac_key: hmac_key(w, m, p),
    };
    if !r.pseudonymize.is_empty() && r.hmac_key.is_none() {
        w.error(
            &join(p, "pseudonymize"),
            "needs a key: set hmac_key_file or hmac_key_env",
        );
    }
    r
}

/// A list of attribute names under `key`: non-empty strings.
fn names(w: &mut Walker, m: &Mapping, p: &str, key: &str) -> Vec<String> {
    m.get(key).map_or_else(Vec::new, |v| {
        list(w, v, &join(p, key), |w, ip, item| match string(item) {
            Ok(s) if !s.is_empty() => Some(s.to_owned()),
            Ok(_) => {
                w.error(ip, "must not be empty");
                None
            }
            Err(e) => {
                w.error(ip, e);
                None
            }
        })
    })
}

/// One `replace` item: a regular expression and its replacement (`[REDACTED]` by default).
fn replacement(w: &mut Walker, ip: &str, item: &Value) -> Option<Replacement> {
    let Value::Mapping(rm) = item else {
        w.error(ip, "expected a mapping with pattern and with");
        return None;
    };
    w.known_keys(rm, ip, &["pattern", "with"]);
    let pattern = match rm.get("pattern").map(string) {
        Some(Ok(s)) => match regex::Regex::new(s) {
            Ok(re) => Some(Pattern(re)),
            Err(e) => {
                w.error(
                    &join(ip, "pattern"),
                    format!("invalid regular expression: {e}"),
                );
                None
            }
        },
        Some(Err(e)) => {
            w.error(&join(ip, "pattern"), e);
            None
        }
        None => {
            w.error(ip, "missing pattern");
            None
        }
    };
    let with = match rm.get("with").map(string) {
        Some(Ok(s)) => s.to_owned(),
        Some(Err(e)) => {
            w.error(&join(ip, "with"), e);
            String::new()
        }
        None => "[REDACTED]".to_owned(),
    };
    Some(Replacement {
        pattern: pattern?,
        with,
    })
}

/// Where the pseudonymisation key comes from: `hmac_key_file` or `hmac_key_env`, not both.
fn hmac_key(w: &mut Walker, m: &Mapping, p: &str) -> Option<SecretSource> {
    let file = m.get("hmac_key_file").map(path);
    let env = m.get("hmac_key_env").map(|v| string(v).map(str::to_owned));
    match (file, env) {
        (Some(_), Some(_)) => {
            w.error(p, "set one of hmac_key_file and hmac_key_env, not both");
            None
        }
        (Some(Ok(f)), None) => Some(SecretSource::File(f)),
        (None, Some(Ok(e))) if !e.is_empty() => Some(SecretSource::Env(e)),
        (Some(Err(e)), None) => {
            w.error(&join(p, "hmac_key_file"), e);
            None
        }
        (None, Some(_)) => {
            w.error(
                &join(p, "hmac_key_env"),
                "expected an environment variable name",
            );
            None
        }
        (None, None) => None,
    }
}
