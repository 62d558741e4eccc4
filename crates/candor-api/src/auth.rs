//! Bearer-token authentication of writes.
//!
//! The server keeps only a hash of each tenant's token
//! ([`hash_token`]), so a leaked configuration does not leak tokens. A
//! presented token is hashed and compared with every stored hash in
//! constant time; which tenant matched (if any) is selected without an
//! early exit, so timing does not reveal how close a guess was.

use subtle::{ConditionallySelectable, ConstantTimeEq};
use tonic::metadata::MetadataMap;

use crate::error::ApiError;

/// BLAKE3 key-derivation context of token hashes.
const TOKEN_CONTEXT: &str = "candor-v1 api bearer token";

/// The stored form of a bearer token: `BLAKE3-derive_key(context, token)`.
/// Tokens are high-entropy random strings, so a fast hash is enough.
pub fn hash_token(token: &str) -> [u8; 32] {
    blake3::derive_key(TOKEN_CONTEXT, token.as_bytes())
}

/// A fresh random bearer token: 32 random bytes, hex (256 bits).
pub fn generate_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("operating system RNG unavailable");
    hex::encode(b)
}

/// One tenant allowed to write.
#[derive(Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    /// [`hash_token`] of the tenant's token.
    pub token_hash: [u8; 32],
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Checks `authorization: Bearer <token>` against the configured tenants.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tenants: Vec<Tenant>,
}

impl Authenticator {
    pub fn new(tenants: Vec<Tenant>) -> Self {
        Self { tenants }
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// The tenant whose token the request carries.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<&str, ApiError> {
        let Some(value) = metadata.get("authorization") else {
            return Err(ApiError::Unauthenticated(
                "missing authorization: Bearer <token>",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("malformed authorization header"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(ApiError::Unauthenticated(
                    "authorization must be Bearer <token>",
                ));
            }
        };
        if token.is_empty() {
            return Err(ApiError::Unauthenticated("empty bearer token"));
        }
        let presented = hash_token(token);
        let mut found = subtle::Choice::from(0);
        let mut which = 0u32;
        for (i, t) in self.tenants.iter().enumerate() {
            let eq = t.token_hash.ct_eq(&presented);
            which = u32::conditional_select(&which, &(i as u32), eq);
            found |= eq;
        }
        if bool::from(found) {
            Ok(&self.tenants[which as usize].name)
        } else {
            Err(ApiError::Unauthenticated("unknown bearer token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn md(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", MetadataValue::try_from(v).unwrap());
        m
    }

    #[test]
    fn accepts_only_known_tokens() {
        let a = Authenticator::new(vec![
            Tenant {
                name: "a".into(),
                token_hash: hash_token("tok-a"),
            },
            Tenant {
                name: "b".into(),
                token_hash: hash_token("tok-b"),
            },
        ]);
        assert_eq!(a.authenticate(&md("Bearer tok-a")).unwrap(), "a");
        assert_eq!(a.authenticate(&md("bearer tok-b")).unwrap(), "b");
        assert!(a.authenticate(&md("Bearer tok-c")).is_err());
        assert!(a.authenticate(&md("Basic tok-a")).is_err());
        assert!(a.authenticate(&md("Bearer ")).is_err());
        assert!(a.authenticate(&MetadataMap::new()).is_err());
        assert!(
            Authenticator::default()
                .authenticate(&md("Bearer tok-a"))
                .is_err()
        );
    }
}
