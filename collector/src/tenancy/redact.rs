//! Redaction: a tenant's rules applied to its decoded OTLP records before conversion, so nothing
//! unredacted reaches the write-ahead log or a Parquet file.
//!
//! Three rules, in this order: drop attributes by key; pseudonymise attribute values by key with
//! HMAC-SHA256 under the tenant's key (`hmac-sha256:<32 hex>`: equal inputs give equal outputs,
//! so values stay joinable, but cannot be reversed without the key); replace regex matches in
//! string attribute values and string bodies (nested arrays and maps included). Every record
//! stores the [`Redactor::version`] it went through: a digest of the rules and of the key, so a
//! change to either gives a new version.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use sha2::{Digest, Sha256};

use crate::config::{Redaction, SecretSource};
use crate::otlp::any_value;

/// Smallest accepted pseudonymisation key.
const MIN_KEY_BYTES: usize = 16;

/// A tenant's compiled redaction rules.
#[derive(Debug)]
pub struct Redactor {
    rules: Redaction,
    key: Vec<u8>,
    version: String,
}

impl Redactor {
    /// Compiles `rules`, reading the HMAC key from its file or environment variable. `None`
    /// when there is nothing to redact.
    pub fn build(rules: &Redaction) -> Result<Option<Self>, String> {
        if rules.is_empty() {
            return Ok(None);
        }
        let key = match &rules.hmac_key {
            None => Vec::new(),
            Some(SecretSource::File(path)) => std::fs::read(path)
                .map_err(|e| format!("cannot read hmac_key_file {}: {e}", path.display()))?
                .trim_ascii()
                .to_vec(),
            Some(SecretSource::Env(name)) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} (hmac_key_env) is not set"))?
                .trim()
                .as_bytes()
                .to_vec(),
        };
        if !rules.pseudonymize.is_empty() && key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the HMAC key must be at least {MIN_KEY_BYTES} bytes (found {})",
                key.len()
            ));
        }
        let mut digest = Sha256::new();
        let mut add = |part: &str| {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part.as_bytes());
        };
        for k in &rules.drop_attributes {
            add("drop");
            add(k);
        }
        for k in &rules.pseudonymize {
            add("pseudonymize");
            add(k);
        }
        for r in &rules.replace {
            add("replace");
            add(r.pattern.0.as_str());
            add(&r.with);
        }
        digest.update(Sha256::digest(&key));
        let version = format!("r1-{}", &hex::encode(digest.finalize())[..16]);
        Ok(Some(Self {
            rules: rules.clone(),
            key,
            version,
        }))
    }

    /// The policy version stored with every record this redactor touched.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Redacts resource or scope attributes.
    pub fn attributes(&self, attributes: &mut Vec<KeyValue>) {
        attributes.retain(|kv| !self.rules.drop_attributes.contains(&kv.key));
        for kv in attributes {
            if self.rules.pseudonymize.contains(&kv.key) {
                let text = any_value::to_text(kv.value.as_ref()).unwrap_or_default();
                kv.value = Some(string_value(self.pseudonym(&text)));
            } else if let Some(value) = &mut kv.value {
                self.replace(value);
            }
        }
    }

    pub fn log(&self, record: &mut LogRecord) {
        self.attributes(&mut record.attributes);
        if let Some(body) = &mut record.body {
            self.replace(body);
        }
    }

    pub fn span(&self, span: &mut Span) {
        self.attributes(&mut span.attributes);
        for event in &mut span.events {
            self.attributes(&mut event.attributes);
        }
        for link in &mut span.links {
            self.attributes(&mut link.attributes);
        }
    }

    fn pseudonym(&self, text: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(text.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("hmac-sha256:{}", hex::encode(&tag[..16]))
    }

    fn replace(&self, value: &mut AnyValue) {
        match &mut value.value {
            Some(Value::StringValue(s)) => {
                for r in &self.rules.replace {
                    if let std::borrow::Cow::Owned(new) = r.pattern.0.replace_all(s, &r.with) {
                        *s = new;
                    }
                }
            }
            Some(Value::ArrayValue(a)) => a.values.iter_mut().for_each(|v| self.replace(v)),
            Some(Value::KvlistValue(kv)) => self.attributes(&mut kv.values),
            _ => {}
        }
    }
}

fn string_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Pattern, Replacement};

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(string_value(value.into())),
            ..Default::default()
        }
    }

    fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| any_value::to_text(kv.value.as_ref()))
            .map(|text| text.into_owned())
    }

    #[test]
    fn drops_pseudonymises_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "0123456789abcdef-secret\n").unwrap();
        let rules = Redaction {
            drop_attributes: vec!["password".into()],
            replace: vec![Replacement {
                pattern: Pattern(regex::Regex::new(r"\b\d{4}-\d{4}-\d{4}-\d{4}\b").unwrap()),
                with: "[card]".into(),
            }],
            pseudonymize: vec!["user.id".into()],
            hmac_key: Some(SecretSource::File(key_file.clone())),
        };
        let r = Redactor::build(&rules).unwrap().unwrap();
        let mut attrs = vec![
            kv("password", "hunter2"),
            kv("user.id", "u-42"),
            kv("note", "paid with 1234-5678-9012-3456 today"),
        ];
        r.attributes(&mut attrs);
        assert_eq!(text(&attrs, "password"), None);
        let pseudo = text(&attrs, "user.id").unwrap();
        assert!(
            pseudo.starts_with("hmac-sha256:") && pseudo.len() == 12 + 32,
            "{pseudo}"
        );
        assert!(!pseudo.contains("u-42"));
        assert_eq!(
            text(&attrs, "note").as_deref(),
            Some("paid with [card] today")
        );
        // Joinable: the same input gives the same pseudonym; another input another one.
        let mut again = vec![kv("user.id", "u-42"), kv("x", "y")];
        r.attributes(&mut again);
        assert_eq!(text(&again, "user.id").unwrap(), pseudo);
        let mut other = vec![kv("user.id", "u-43")];
        r.attributes(&mut other);
        assert_ne!(text(&other, "user.id").unwrap(), pseudo);

        // Bodies, including nested values.
        let mut record = LogRecord {
            body: Some(string_value("card 1111-2222-3333-4444".into())),
            ..Default::default()
        };
        r.log(&mut record);
        assert_eq!(
            any_value::to_text(record.body.as_ref()).as_deref(),
            Some("card [card]")
        );

        // The version changes with the key.
        std::fs::write(&key_file, "another-key-of-16-bytes").unwrap();
        let r2 = Redactor::build(&rules).unwrap().unwrap();
        assert_ne!(r.version(), r2.version());
        assert!(r.version().starts_with("r1-"));
    }

    #[test]
    fn short_or_missing_keys_are_refused() {
        let rules = Redaction {
            pseudonymize: vec!["user.id".into()],
            hmac_key: Some(SecretSource::Env("TENANTSCOPE_TEST_SURELY_UNSET".into())),
            ..Default::default()
        };
        let err = Redactor::build(&rules).unwrap_err();
        assert!(err.contains("TENANTSCOPE_TEST_SURELY_UNSET"), "{err}");
        assert!(Redactor::build(&Redaction::default()).unwrap().is_none());
    }
}
