//! [`TenantId`]: the validated tenant identifier every store operation is scoped by.
//!
//! A tenant id is `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` and never `.` or `..` (the first-character
//! rule already excludes both). It is used verbatim as a path segment (`tenant=<id>`), so this
//! type is what keeps a tenant from naming a path outside its own directory. There is no
//! `Default` and no `From<String>`: the only way in is [`TenantId::parse`].

use std::fmt;

/// Longest accepted tenant id, in bytes.
pub const MAX_TENANT_ID_LEN: usize = 64;

/// A validated tenant identifier.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Box<str>);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id is {0} bytes long; at most {MAX_TENANT_ID_LEN} are allowed")]
    TooLong(usize),
    #[error("tenant id must start with an ASCII letter or digit")]
    BadFirst,
    #[error("tenant id contains {0:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    BadChar(char),
}

impl TenantId {
    /// Parses and validates a tenant id.
    pub fn parse(raw: &str) -> Result<Self, TenantIdError> {
        let first = raw.chars().next().ok_or(TenantIdError::Empty)?;
        if raw.len() > MAX_TENANT_ID_LEN {
            return Err(TenantIdError::TooLong(raw.len()));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(TenantIdError::BadFirst);
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(TenantIdError::BadChar(bad));
        }
        Ok(Self(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Result<&str, TenantIdError>) {
        let got = TenantId::parse(raw);
        assert_eq!(
            got.as_ref().map(TenantId::as_str).map_err(Clone::clone),
            expected,
            "input {raw:?}"
        );
    }

    #[test]
    fn accepts_valid_ids() {
        check("acme", Ok("acme"));
        check("a", Ok("a"));
        check("Acme-Corp_2.eu", Ok("Acme-Corp_2.eu"));
        check(&"x".repeat(64), Ok(&"x".repeat(64)));
    }

    #[test]
    fn refuses_invalid_ids() {
        check("", Err(TenantIdError::Empty));
        check(".", Err(TenantIdError::BadFirst));
        check("..", Err(TenantIdError::BadFirst));
        check("../x", Err(TenantIdError::BadFirst));
        check("a/../b", Err(TenantIdError::BadChar('/')));
        check("a/b", Err(TenantIdError::BadChar('/')));
        check("a\0b", Err(TenantIdError::BadChar('\0')));
        check("äcme", Err(TenantIdError::BadFirst));
        check("acmé", Err(TenantIdError::BadChar('é')));
        check("a b", Err(TenantIdError::BadChar(' ')));
        check("-a", Err(TenantIdError::BadFirst));
        check(&"x".repeat(65), Err(TenantIdError::TooLong(65)));
        check(&"x".repeat(200), Err(TenantIdError::TooLong(200)));
    }
}
