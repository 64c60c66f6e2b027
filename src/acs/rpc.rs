//! Alibaba Cloud's RPC signature, HMAC-SHA1 (`SignatureVersion=1.0`). Alibaba deprecates it for
//! new APIs, but every official credentials SDK still signs STS `AssumeRole` with it, so the STS
//! client signs with it and the simulated STS verifies with it. One implementation serves both,
//! pinned by the official example.

use aws_lc_rs::hmac;
use base64::Engine as _;

use super::v3::encode;

pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
pub const SIGNATURE_VERSION: &str = "1.0";

/// The parameters (query and form together, `Signature` excluded) sorted by name and RFC 3986
/// encoded, joined as `name=value&...`.
pub fn canonicalized<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    // The same rule as ACS3's canonical query; kept as one function so the two cannot drift.
    super::v3::canonical_query(params)
}

/// `METHOD&%2F&<the canonicalized parameters, encoded once more>`.
pub fn string_to_sign(method: &str, canonicalized: &str) -> String {
    format!("{method}&{}&{}", encode("/"), encode(canonicalized))
}

/// Base64 of HMAC-SHA1 keyed with `secret&`.
pub fn sign(access_key_secret: &str, string_to_sign: &str) -> String {
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{access_key_secret}&").as_bytes(),
    );
    let tag = hmac::sign(&key, string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The signature of a request with these parameters.
pub fn signature<'a>(
    method: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    access_key_secret: &str,
) -> String {
    sign(
        access_key_secret,
        &string_to_sign(method, &canonicalized(params)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Alibaba Cloud's RPC signature documentation (ECS DescribeRegions).
    #[test]
    fn official_example() {
        let params = [
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ];
        let to_sign = string_to_sign("GET", &canonicalized(params));
        assert_eq!(
            to_sign,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z\
             %26Version%3D2014-05-26"
        );
        assert_eq!(sign("testsecret", &to_sign), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert_eq!(
            signature("GET", params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        // The method is signed: the same parameters POSTed sign differently.
        assert_ne!(
            signature("POST", params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn encoding_is_rfc3986() {
        assert_eq!(
            canonicalized([("b", "a b*c~"), ("a", "x/y")]),
            "a=x%2Fy&b=a%20b%2Ac~"
        );
    }
}
