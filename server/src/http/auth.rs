//! The bearer token guarding repository control and the repository index
//! (`--control-token`), shared by the HTTP and gRPC transports.

use std::sync::Arc;

/// The token control calls must present, if one is configured.
#[derive(Clone, Default)]
pub struct ControlToken(Option<Arc<str>>);

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        f.write_str(if self.0.is_some() {
            "ControlToken(set)"
        } else {
            "ControlToken(none)"
        })
    }
}

impl ControlToken {
    /// A guard for `token` (None or empty: control calls are open).
    pub fn new(token: Option<&str>) -> Self {
        ControlToken(token.filter(|t| !t.is_empty()).map(Arc::from))
    }

    /// Whether a token is configured.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// True when no token is configured, or `authorization` (an `Authorization` header or
    /// gRPC `authorization` metadata value) is `Bearer <token>`.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(want) = &self.0 else {
            return true;
        };
        let Some(value) = authorization else {
            return false;
        };
        // The scheme name is case-insensitive (RFC 7235 § 2.1).
        let Some(given) = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"Bearer "))
            .map(|_| &value[7..])
        else {
            return false;
        };
        constant_time_eq(given, want.as_bytes())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let open = ControlToken::new(None);
        assert!(open.admits(None));
        assert!(ControlToken::new(Some("")).admits(None));
        let t = ControlToken::new(Some("s3cret"));
        assert!(t.admits(Some(b"Bearer s3cret")));
        assert!(t.admits(Some(b"bearer s3cret")));
        for bad in [
            &b""[..],
            b"s3cret",
            b"Bearer",
            b"Bearer ",
            b"Bearer s3cre",
            b"Bearer s3cret2",
            b"Basic s3cret",
            b"Bearer S3CRET",
        ] {
            assert!(!t.admits(Some(bad)), "{}", String::from_utf8_lossy(bad));
        }
        assert!(!t.admits(None));
        assert_eq!(format!("{t:?}"), "ControlToken(set)");
    }
}
