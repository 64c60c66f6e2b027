//! Alibaba Cloud's ACS3-HMAC-SHA256 request signature ("V3"), shared by the CAMS client, which
//! signs, and the simulated CAMS, which verifies. One implementation serves both so that the
//! official test vectors pin the two sides at once.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Hex SHA-256 of an empty body, sent as `x-acs-content-sha256` on every call to CAMS.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 unreserved characters stay; everything else, `*` and space included, is `%XX`.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one query name or value as the signature (and the wire) requires.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, RFC3986).to_string()
}

/// Builds the canonical query string: pairs sorted by name, then value, RFC 3986 encoded.
/// The same string is sent on the wire, so what is signed is exactly what CAMS receives.
pub fn canonical_query<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut encoded: Vec<(String, String)> = params
        .into_iter()
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    encoded.sort();
    let mut out = String::with_capacity(encoded.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Splits a raw query string into decoded pairs, the way a server reads it. `+` is a literal
/// plus sign here (RFC 3986), never a space. Returns `None` when a pair is not valid UTF-8.
pub fn parse_query(raw: &str) -> Option<Vec<(String, String)>> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode_str(k).decode_utf8().ok()?;
            let v = percent_decode_str(v).decode_utf8().ok()?;
            Some((k.into_owned(), v.into_owned()))
        })
        .collect()
}

/// Lower-case hex SHA-256.
pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The parts of a request that the signature covers.
pub struct RequestToSign<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Already canonical (see [`canonical_query`]).
    pub canonical_query: &'a str,
    /// Signed headers as (lower-case name, value); any order.
    pub headers: &'a [(&'a str, &'a str)],
    pub body_sha256: &'a str,
}

/// The signature of a request, with the `SignedHeaders` list it covers.
pub struct Signature {
    pub signed_headers: String,
    pub hex: String,
    pub canonical_request_sha256: String,
}

impl RequestToSign<'_> {
    pub fn canonical_request(&self) -> (String, String) {
        let mut headers: Vec<(&str, &str)> = self.headers.to_vec();
        headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut canonical_headers = String::new();
        for (name, value) in &headers {
            canonical_headers.push_str(name);
            canonical_headers.push(':');
            canonical_headers.push_str(value.trim());
            canonical_headers.push('\n');
        }
        let signed_headers = headers
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path,
            self.canonical_query,
            canonical_headers,
            signed_headers,
            self.body_sha256
        );
        (canonical, signed_headers)
    }

    pub fn sign(&self, access_key_secret: &str) -> Signature {
        let (canonical, signed_headers) = self.canonical_request();
        let canonical_request_sha256 = hex_sha256(canonical.as_bytes());
        let string_to_sign = format!("{ALGORITHM}\n{canonical_request_sha256}");
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(access_key_secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(string_to_sign.as_bytes());
        Signature {
            signed_headers,
            hex: hex::encode(mac.finalize().into_bytes()),
            canonical_request_sha256,
        }
    }
}

/// Formats the `Authorization` header value.
pub fn authorization(access_key_id: &str, signature: &Signature) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
        signature.signed_headers, signature.hex
    )
}

/// A parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedAuthorization<'a> {
    pub access_key_id: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Parses `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`; `None` when incomplete.
pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut id, mut headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => id = Some(v),
            "SignedHeaders" => headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    Some(ParsedAuthorization {
        access_key_id: id.filter(|v| !v.is_empty())?,
        signed_headers: headers?.split(';').filter(|h| !h.is_empty()).collect(),
        signature: signature.filter(|v| !v.is_empty())?,
    })
}

/// Constant-time comparison of two signatures, so a verifier leaks no timing.
pub fn signatures_match(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "3156853299f313e23d1673dc12e1703d";
    const DATE: &str = "2023-10-26T10:22:32Z";

    #[test]
    fn official_vector_runinstances() {
        let query = canonical_query([
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", DATE),
            ("x-acs-signature-nonce", NONCE),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ];
        let sig = RequestToSign {
            method: "POST",
            path: "/",
            canonical_query: &query,
            headers: &headers,
            body_sha256: EMPTY_BODY_SHA256,
        }
        .sign("YourAccessKeySecret");
        assert_eq!(
            sig.signed_headers,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            sig.canonical_request_sha256,
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            sig.hex,
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    fn getflow_headers(
        extra: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![
            ("host", "cams.ap-southeast-1.aliyuncs.com"),
            ("x-acs-action", "GetFlow"),
            ("x-acs-version", "2020-06-06"),
            ("x-acs-date", DATE),
            ("x-acs-signature-nonce", NONCE),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ];
        headers.extend_from_slice(extra);
        headers
    }

    fn sign_getflow(headers: &[(&str, &str)]) -> Signature {
        let query = canonical_query([("FlowId", "333993838"), ("CustSpaceId", "cams-kei1")]);
        assert_eq!(query, "CustSpaceId=cams-kei1&FlowId=333993838");
        RequestToSign {
            method: "POST",
            path: "/",
            canonical_query: &query,
            headers,
            body_sha256: EMPTY_BODY_SHA256,
        }
        .sign("testsecret")
    }

    #[test]
    fn getflow_vector_access_key() {
        let sig = sign_getflow(&getflow_headers(&[]));
        assert_eq!(
            authorization("testid", &sig),
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;\
             x-acs-date;x-acs-signature-nonce;x-acs-version,\
             Signature=cb83a1984cc40fba1b672760a21ba8c04661e78d899880319263edd8fee19d57"
        );
    }

    #[test]
    fn getflow_vector_sts() {
        let sig = sign_getflow(&getflow_headers(&[
            ("x-acs-accesskey-id", "testid"),
            ("x-acs-security-token", "fake-sts-token"),
        ]));
        assert_eq!(
            sig.signed_headers,
            "host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;\
             x-acs-security-token;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            sig.hex,
            "cfc7ce18cfef6816984cd46490d3aae87c7bd669100460f9dd1cf8f8c402478c"
        );
    }

    #[test]
    fn encoding_follows_rfc3986() {
        assert_eq!(encode("a b*c~d-e_f.g"), "a%20b%2Ac~d-e_f.g");
        assert_eq!(encode("1&Action=DeleteFlow"), "1%26Action%3DDeleteFlow");
        assert_eq!(encode("é+/"), "%C3%A9%2B%2F");
        assert_eq!(canonical_query([("B", ""), ("A", "x")]), "A=x&B=");
        assert_eq!(canonical_query(std::iter::empty()), "");
    }

    #[test]
    fn query_round_trips_hostile_values() {
        for value in [
            "1&Action=DeleteFlow",
            "a+b c",
            "%41",
            "line\nbreak",
            "名字",
            "=&=&",
        ] {
            let query = canonical_query([("FlowId", value)]);
            assert_eq!(
                parse_query(&query),
                Some(vec![("FlowId".to_owned(), value.to_owned())])
            );
        }
    }

    #[test]
    fn authorization_parses_back() {
        let sig = sign_getflow(&getflow_headers(&[]));
        let header = authorization("testid", &sig);
        let parsed = parse_authorization(&header).expect("parses");
        assert_eq!(parsed.access_key_id, "testid");
        assert_eq!(parsed.signed_headers.len(), 6);
        assert_eq!(parsed.signature, sig.hex);
        assert_eq!(parse_authorization("ACS3-HMAC-SHA256 Credential=x"), None);
        assert_eq!(parse_authorization("Bearer abc"), None);
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_match("abcd", "abcd"));
        assert!(!signatures_match("abcd", "abce"));
        assert!(!signatures_match("abcd", "abc"));
    }

    /// Strings worth more than uniform Unicode: the bytes that structure a query, `%` followed
    /// by hex (a pre-encoded look-alike), `+`, whitespace and controls, and multi-byte text.
    fn hostile_string() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just("%".to_owned()),
            Just("%41".to_owned()),
            Just("%zz".to_owned()),
            Just("+".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("\0".to_owned()),
            Just("~".to_owned()),
            Just("名".to_owned()),
            Just("\u{1F600}".to_owned()),
            "[a-zA-Z0-9._-]{0,4}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #[test]
        fn encode_is_unreserved_or_upper_hex_escapes(s in hostile_string()) {
            let encoded = encode(&s);
            let bytes = encoded.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
                    proptest::prop_assert!(
                        hex.len() == 2
                            && hex.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
                        "bad escape at {} in {:?}", i, encoded
                    );
                    i += 3;
                } else {
                    proptest::prop_assert!(
                        bytes[i].is_ascii_alphanumeric() || b"-_.~".contains(&bytes[i]),
                        "reserved byte {:#04x} left in {:?}", bytes[i], encoded
                    );
                    i += 1;
                }
            }
        }

        #[test]
        fn encode_decodes_back(s in hostile_string()) {
            let encoded = encode(&s);
            let decoded = percent_decode_str(&encoded).decode_utf8();
            proptest::prop_assert_eq!(decoded.as_deref(), Ok(s.as_str()));
        }

        #[test]
        fn canonical_query_round_trips(
            pairs in proptest::collection::vec((hostile_string(), hostile_string()), 0..6)
        ) {
            let query = canonical_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            // The encoder sorts by the encoded bytes, which is not the raw order: `~` stays,
            // `é` becomes `%C3%A9`.
            let mut sorted = pairs.clone();
            sorted.sort_by_cached_key(|(k, v)| (encode(k), encode(v)));
            proptest::prop_assert_eq!(parse_query(&query), Some(sorted));
        }
    }
}
