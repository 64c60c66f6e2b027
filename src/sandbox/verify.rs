//! The gateway's checks before a call reaches a Flow read (action, signature, credential, date,
//! body digest, nonce), in the order the real gateway reports them.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::SandboxConfig;
use super::action::Action;
use super::envelope::ErrorReply;
use super::nonces::NonceCache;
use crate::acs::openapi::API_VERSION;
use crate::acs::v3::{
    ParsedAuthorization, RequestToSign, canonical_query, hex_sha256, parse_authorization,
    signatures_match,
};

const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// What a signed call brought with it.
pub(super) struct Incoming<'a> {
    pub headers: &'a HeaderMap,
    /// From the Host header (or the request target's authority).
    pub host: Option<&'a str>,
    /// The decoded query; `None` when it could not be decoded.
    pub params: Option<&'a [(String, String)]>,
    pub body: &'a [u8],
}

/// A call that passed every check.
pub(super) struct Verified<'a> {
    /// The AccessKeyId that signed it.
    pub access_key_id: &'a str,
    pub action: Action,
}

/// Runs steps 1 to 7; on success the call's nonce has been consumed.
pub(super) fn verify<'a>(
    config: &SandboxConfig,
    nonces: &Mutex<NonceCache>,
    call: &Incoming<'a>,
    wall_clock: SystemTime,
    now: Instant,
) -> Result<Verified<'a>, ErrorReply> {
    let action = check_action(call.headers)?;
    let auth = check_authorization(call.headers)?;
    let secret = check_credential(config, call.headers, &auth, wall_clock)?;
    check_date(call.headers, wall_clock)?;
    let body_sha256 = check_body_digest(call.headers, call.body)?;
    check_signature(&secret, call, &auth, &body_sha256)?;
    consume_nonce(nonces, call.headers, now)?;
    Ok(Verified {
        access_key_id: auth.access_key_id,
        action,
    })
}

fn check_action(headers: &HeaderMap) -> Result<Action, ErrorReply> {
    let action = header(headers, "x-acs-action")
        .and_then(Action::from_name)
        .ok_or_else(invalid_action)?;
    if header(headers, "x-acs-version") != Some(API_VERSION) {
        return Err(ErrorReply::bad_request(
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }
    Ok(action)
}

pub(super) fn invalid_action() -> ErrorReply {
    ErrorReply::new(
        StatusCode::NOT_FOUND,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
    )
}

fn check_authorization(headers: &HeaderMap) -> Result<ParsedAuthorization<'_>, ErrorReply> {
    let auth = header(headers, "authorization")
        .and_then(parse_authorization)
        .ok_or_else(|| incomplete("the Authorization header is missing or malformed"))?;
    if !auth.signed_headers.contains(&"host") {
        return Err(incomplete("SignedHeaders must include host"));
    }
    let unsigned = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("x-acs-"))
        .find(|name| !auth.signed_headers.contains(name));
    if let Some(name) = unsigned {
        return Err(incomplete(&format!("SignedHeaders must include {name}")));
    }
    Ok(auth)
}

fn incomplete(detail: &str) -> ErrorReply {
    ErrorReply::bad_request(
        "IncompleteSignature",
        format!("The request signature does not conform to Aliyun standards: {detail}."),
    )
}

/// The key and its STS token: the configured pair, or a temporary key the simulated STS or
/// metadata service issued, until it expires. Answers the secret to verify the signature with.
fn check_credential(
    config: &SandboxConfig,
    headers: &HeaderMap,
    auth: &ParsedAuthorization<'_>,
    wall_clock: SystemTime,
) -> Result<SecretString, ErrorReply> {
    let unknown_key = || {
        ErrorReply::new(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    };
    let (secret, token, expires_at) = if auth.access_key_id == config.access_key_id {
        let Some(token) = &config.security_token else {
            return Ok(config.access_key_secret.clone());
        };
        (config.access_key_secret.clone(), token.clone(), None)
    } else {
        let issued = config
            .keyring
            .get(auth.access_key_id)
            .ok_or_else(unknown_key)?;
        (issued.secret, issued.token, Some(issued.expires_at))
    };
    let presented = header(headers, "x-acs-security-token").unwrap_or_default();
    if !signatures_match(token.expose_secret(), presented) {
        return Err(ErrorReply::bad_request(
            "InvalidSecurityToken.Mismatch",
            "Specified SecurityToken mismatch with the AccessKey.",
        ));
    }
    match header(headers, "x-acs-accesskey-id") {
        None => {
            return Err(incomplete(
                "x-acs-accesskey-id must accompany x-acs-security-token",
            ));
        }
        Some(id) if id != auth.access_key_id => return Err(unknown_key()),
        Some(_) => {}
    }
    if expires_at.is_some_and(|at| wall_clock >= at) {
        return Err(ErrorReply::bad_request(
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        ));
    }
    Ok(secret)
}

fn check_date(headers: &HeaderMap, wall_clock: SystemTime) -> Result<(), ErrorReply> {
    let date = header(headers, "x-acs-date")
        .and_then(parse_acs_date)
        .ok_or_else(|| {
            ErrorReply::bad_request(
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        })?;
    let skew = match wall_clock.duration_since(date) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(ErrorReply::bad_request(
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

/// Exactly `yyyy-MM-ddTHH:mm:ssZ`: no fraction, no offset.
fn parse_acs_date(value: &str) -> Option<SystemTime> {
    crate::acs::parse_timestamp(value)
}

fn check_body_digest(headers: &HeaderMap, body: &[u8]) -> Result<String, ErrorReply> {
    let actual = hex_sha256(body);
    if header(headers, "x-acs-content-sha256") != Some(actual.as_str()) {
        return Err(ErrorReply::bad_request(
            "SignatureDoesNotMatch",
            "Specified x-acs-content-sha256 is not matched with the request body.",
        ));
    }
    Ok(actual)
}

fn check_signature(
    secret: &SecretString,
    call: &Incoming<'_>,
    auth: &ParsedAuthorization<'_>,
    body_sha256: &str,
) -> Result<(), ErrorReply> {
    let mismatch = || {
        ErrorReply::bad_request(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        )
    };
    // Decoding then re-encoding, as the real gateway does, means a client that sends a different
    // encoding than it signed is caught here.
    let params = call.params.ok_or_else(|| {
        ErrorReply::bad_request(
            "InvalidParameter",
            "The query string is not valid percent-encoded UTF-8.",
        )
    })?;
    let query = canonical_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    let mut values = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let value = if *name == "host" {
            Some(call.host.unwrap_or_default().to_owned())
        } else {
            signed_value(call.headers, name)
        };
        values.push((*name, value.ok_or_else(mismatch)?));
    }
    let headers: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let expected = RequestToSign {
        method: "POST",
        path: "/",
        canonical_query: &query,
        headers: &headers,
        body_sha256,
    }
    .sign(secret.expose_secret());
    if signatures_match(&expected.hex, auth.signature) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

fn consume_nonce(
    nonces: &Mutex<NonceCache>,
    headers: &HeaderMap,
    now: Instant,
) -> Result<(), ErrorReply> {
    let nonce = header(headers, "x-acs-signature-nonce")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ErrorReply::bad_request(
                "MissingSignatureNonce",
                "The input parameter \"x-acs-signature-nonce\" that is mandatory for processing \
                 this request is not supplied.",
            )
        })?;
    let fresh = nonces
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(nonce, now);
    if fresh {
        Ok(())
    } else {
        Err(ErrorReply::bad_request(
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// All values of a header joined by commas. A signed header that was not sent reads as empty,
/// which only verifies if the client signed it empty too; `None` when a value is not text and so
/// cannot have been signed as sent.
fn signed_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let texts: Option<Vec<&str>> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    texts.map(|t| t.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_shape_is_strict() {
        assert!(parse_acs_date("2023-10-26T10:22:32Z").is_some());
        for bad in [
            "2023-10-26T10:22:32.5Z",
            "2023-10-26T10:22:32+00:00",
            "2023-10-26 10:22:32Z",
            "2023-13-26T10:22:32Z",
            "Thu, 26 Oct 2023 10:22:32 GMT",
            "",
        ] {
            assert!(parse_acs_date(bad).is_none(), "{bad}");
        }
    }
}
