//! ListFlows' page tokens, as AIP-158 asks: opaque to callers, and bound to the request's other
//! fields. A token holds the next page's index and a digest of the fields it was given for (the
//! space, the filter, the page size) and of that index; a token reused with other fields, altered
//! or made up does not match its digest and is refused. It carries no secret and grants nothing:
//! any page of a space the caller may read is the caller's to ask for; the digest only tells a
//! token of this request from anything else.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::domain::TenantId;

/// Bump when the token's form changes: older tokens are then refused, never misread.
const VERSION: u8 = 1;
const DIGEST_BYTES: usize = 12;
const TOKEN_BYTES: usize = 1 + 4 + DIGEST_BYTES;

/// What a page token is bound to: every field of the request but the token.
pub(super) struct Binding<'a> {
    pub tenant: &'a TenantId,
    pub flow_name: &'a str,
    pub page_size: u32,
}

impl Binding<'_> {
    fn digest(&self, index: u32) -> [u8; DIGEST_BYTES] {
        let mut hash = Sha256::new();
        hash.update(b"cams-flows ListFlows page token\0");
        for part in [
            self.tenant.as_str().as_bytes(),
            self.flow_name.as_bytes(),
            self.page_size.to_string().as_bytes(),
            index.to_string().as_bytes(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let mut digest = [0; DIGEST_BYTES];
        digest.copy_from_slice(&hash.finalize()[..DIGEST_BYTES]);
        digest
    }

    /// The token of the page at `index` (from 1).
    pub(super) fn token(&self, index: u32) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&index.to_be_bytes());
        bytes.extend_from_slice(&self.digest(index));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The page `token` stands for: 1 for none; `None` for a token that is not one of this
    /// request's.
    pub(super) fn index(&self, token: &str) -> Option<u32> {
        if token.is_empty() {
            return Some(1);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != TOKEN_BYTES || bytes[0] != VERSION {
            return None;
        }
        let index = u32::from_be_bytes(bytes[1..5].try_into().ok()?);
        (index >= 2 && bytes[5..] == self.digest(index)).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding<'a>(tenant: &'a TenantId, flow_name: &'a str, page_size: u32) -> Binding<'a> {
        Binding {
            tenant,
            flow_name,
            page_size,
        }
    }

    #[test]
    fn a_token_is_good_for_its_request_only() {
        let tenant = TenantId::parse("space").expect("tenant");
        let other = TenantId::parse("other").expect("tenant");
        let asked = binding(&tenant, "sign", 20);
        let token = asked.token(3);
        assert_eq!(asked.index(&token), Some(3));
        assert_eq!(asked.index(""), Some(1));
        for elsewhere in [
            binding(&other, "sign", 20),
            binding(&tenant, "sign-up", 20),
            binding(&tenant, "sign", 21),
        ] {
            assert_eq!(elsewhere.index(&token), None, "reused with other fields");
        }
        // Altered: another page, a changed byte, cut short, not base64, made up.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        bytes[4] ^= 1;
        assert_eq!(asked.index(&URL_SAFE_NO_PAD.encode(&bytes)), None);
        assert_eq!(asked.index(&token[..token.len() - 2]), None);
        assert_eq!(asked.index("not a token!"), None);
        assert_eq!(
            asked.index(&URL_SAFE_NO_PAD.encode([1u8; TOKEN_BYTES])),
            None
        );
        // The first page has no token: a token that says 1 (or 0) is made up.
        assert_eq!(asked.index(&asked.token(1)), None);
        assert_eq!(asked.index(&asked.token(0)), None);
    }
}
