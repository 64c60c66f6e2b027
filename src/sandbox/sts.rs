//! The simulated STS: `AssumeRoleWithOIDC` (unsigned; the OIDC token must come in the body and
//! look like a JWT), `AssumeRole` and `GetCallerIdentity` (the RPC HMAC-SHA1 signature verified
//! over query and body together, by a configured signer or a key issued here). The first two
//! issue keys into the shared keyring, valid for the configured lifetime; the third says whose a
//! key is. Every key belongs to the one simulated account (`IdentityConfig::account_id`): the
//! signers are its RAM user, the issued keys sessions of its roles.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::State as Extract,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::Response,
};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{
    envelope::{json_response, new_request_id},
    issuer::{Fault, State, StsCall},
    keyring::{Issued, RoleSession},
};
use crate::acs::{
    rpc,
    v3::{hex_sha256, parse_query, signatures_match},
};

const HOST_ID: &str = "sts.aliyuncs.com";
const VERSION: &str = "2015-04-01";
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// The RAM user whose AccessKeys the configured signers are.
const USER_NAME: &str = "cams-flows";

/// An STS refusal: the HTTP status and the envelope's code and message.
struct Refusal(StatusCode, String, String);

fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
    Refusal(status, code.to_owned(), message.into())
}

fn bad(code: &str, message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, code, message)
}

fn envelope(refusal: &Refusal) -> Response {
    let request_id = new_request_id();
    let body = json!({
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": refusal.1,
        "Message": refusal.2,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=Sts", refusal.1),
    });
    json_response(refusal.0, &body, &request_id)
}

/// Query and form parameters together, as the RPC gateway reads them.
struct Params {
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
}

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(&self.form)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &str) -> Result<&str, Refusal> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad(
                "MissingParameter",
                format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
            )
        })
    }

    fn in_query(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }
}

pub(super) async fn handle(
    Extract(state): Extract<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut call = StsCall {
        action: String::new(),
        role_arn: String::new(),
        session_name: String::new(),
        token_sha256: None,
        signer: None,
        code: String::new(),
    };
    let response = match answer(&state, &method, &uri, &headers, &body, &mut call) {
        Ok(reply) => {
            call.code = "OK".to_owned();
            let account = &state.config.account_id;
            match reply {
                Reply::Keys(id, issued) => credentials(account, &call, &id, &issued),
                Reply::Caller(caller) => caller_identity(account, &caller),
            }
        }
        Err(refusal) => {
            call.code.clone_from(&refusal.1);
            if refusal.1 == "garbage" {
                garbage()
            } else {
                envelope(&refusal)
            }
        }
    };
    tracing::debug!(action = %call.action, code = %call.code, "sandbox STS answered");
    state.record_sts(call);
    response
}

/// What an accepted call is answered with.
enum Reply {
    /// Keys just issued (`AssumeRole`, `AssumeRoleWithOIDC`).
    Keys(String, Issued),
    /// Whose the signing key is (`GetCallerIdentity`).
    Caller(Caller),
}

/// Who signed a call: the RAM user of a configured signer, or the role session of an issued key.
enum Caller {
    User,
    Role(RoleSession),
}

fn answer(
    state: &State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    call: &mut StsCall,
) -> Result<Reply, Refusal> {
    let bad_encoding = || {
        bad(
            "InvalidParameter",
            "The parameters are not valid percent-encoded UTF-8.",
        )
    };
    let query = parse_query(uri.query().unwrap_or_default()).ok_or_else(bad_encoding)?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        // A form body may write spaces as `+`.
        let text = std::str::from_utf8(body).map_err(|_| bad_encoding())?;
        parse_query(&text.replace('+', "%20")).ok_or_else(bad_encoding)?
    } else {
        Vec::new()
    };
    let params = Params { query, form };
    call.action = params.get("Action").unwrap_or_default().to_owned();
    call.role_arn = params.get("RoleArn").unwrap_or_default().to_owned();
    call.session_name = params.get("RoleSessionName").unwrap_or_default().to_owned();

    let fault = state.sts_fault();
    match &fault {
        Some(Fault::Unavailable) => {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            ));
        }
        Some(Fault::Error { status, code }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
            return Err(refuse(status, code, format!("Simulated error {code}.")));
        }
        Some(Fault::Garbage) => return Err(bad("garbage", "")),
        Some(Fault::Expired | Fault::TokenRefused | Fault::TokenRejected) | None => {}
    }
    if params.get("Version") != Some(VERSION) {
        return Err(bad(
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }
    match call.action.as_str() {
        "AssumeRoleWithOIDC" => oidc(&params, call)?,
        "AssumeRole" => {
            signed(state, method, &params, call)?;
        }
        "GetCallerIdentity" => return signed(state, method, &params, call).map(Reply::Caller),
        _ => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            ));
        }
    }
    params.require("RoleArn")?;
    // Both actions need a session name (the gateway makes one when none is configured).
    params.require("RoleSessionName")?;
    if let Some(duration) = params.get("DurationSeconds") {
        let ok = duration
            .parse::<u64>()
            .is_ok_and(|s| (900..=43_200).contains(&s));
        if !ok {
            return Err(bad(
                "InvalidParameter.DurationSeconds",
                "The parameter DurationSeconds is out of range.",
            ));
        }
    }
    let role = RoleSession {
        role_name: role_name(&call.role_arn).to_owned(),
        session_name: call.session_name.clone(),
    };
    let (id, issued) = state.issue(fault.as_ref(), role);
    Ok(Reply::Keys(id, issued))
}

/// The role's name in its ARN (`acs:ram::<uid>:role/<name>`), or the whole text.
fn role_name(role_arn: &str) -> &str {
    role_arn
        .split_once(":role/")
        .map_or(role_arn, |(_, name)| name)
}

fn oidc(params: &Params, call: &mut StsCall) -> Result<(), Refusal> {
    if params.get("Signature").is_some() || params.get("AccessKeyId").is_some() {
        return Err(bad(
            "InvalidParameter",
            "AssumeRoleWithOIDC is not signed: it takes no Signature or AccessKeyId.",
        ));
    }
    if params.in_query("OIDCToken") {
        // The real STS would take it; the gateway must not put a token in a URL.
        return Err(bad(
            "InvalidParameter.OIDCToken",
            "The OIDC token must be sent in the request body, not the URL.",
        ));
    }
    params.require("OIDCProviderArn")?;
    let token = params.require("OIDCToken")?;
    call.token_sha256 = Some(hex_sha256(token.as_bytes())[..16].to_owned());
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad(
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDC token is not a JWT.",
        ));
    }
    Ok(())
}

/// Verifies a signed call (`AssumeRole`, `GetCallerIdentity`) and says who signed it.
fn signed(
    state: &State,
    method: &Method,
    params: &Params,
    call: &mut StsCall,
) -> Result<Caller, Refusal> {
    let incomplete = |what: &str| {
        bad(
            "IncompleteSignature",
            format!("The request signature is incomplete: {what}."),
        )
    };
    if params.get("SignatureMethod") != Some(rpc::SIGNATURE_METHOD)
        || params.get("SignatureVersion") != Some(rpc::SIGNATURE_VERSION)
    {
        return Err(incomplete(
            "SignatureMethod HMAC-SHA1 and SignatureVersion 1.0",
        ));
    }
    let signature = params
        .get("Signature")
        .ok_or_else(|| incomplete("no Signature"))?;
    let nonce = params.require("SignatureNonce")?;
    let id = params.require("AccessKeyId")?;
    call.signer = Some(id.to_owned());
    let timestamp = params.require("Timestamp")?;
    let at = crate::acs::parse_timestamp(timestamp).ok_or_else(|| {
        bad(
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })?;
    let now = state.config.clock.now();
    let skew = now.duration_since(at).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(bad(
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    let (secret, issued) = state.signer(id).ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    })?;
    if let Some(issued) = &issued {
        let presented = params.get("SecurityToken").unwrap_or_default();
        if !signatures_match(issued.token.expose_secret(), presented) {
            return Err(bad(
                "InvalidSecurityToken.Mismatch",
                "Specified SecurityToken mismatch with the AccessKey.",
            ));
        }
        if now >= issued.expires_at {
            return Err(bad(
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            ));
        }
    }
    let signed = params
        .query
        .iter()
        .chain(&params.form)
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let expected = rpc::signature(method.as_str(), signed, secret.expose_secret());
    if !signatures_match(&expected, signature) {
        return Err(bad(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        ));
    }
    if !state.fresh_nonce(nonce) {
        return Err(bad(
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(match issued {
        None => Caller::User,
        Some(issued) => Caller::Role(issued.role),
    })
}

/// `acs:ram::<uid>:assumed-role/<role>/<session>`: the session's ARN in the simulated account.
fn assumed_role_arn(account: &str, role: &RoleSession) -> String {
    format!(
        "acs:ram::{account}:assumed-role/{}/{}",
        role.role_name, role.session_name
    )
}

/// A stable numeric id for a name (a user's, a role's), `len` digits long, as RAM's ids are.
fn numeric_id(first: char, name: &str, len: usize) -> String {
    let digest = hex_sha256(name.as_bytes());
    let digits = digest
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .take(len.saturating_sub(1));
    std::iter::once(first).chain(digits).collect()
}

fn role_id(account: &str, role: &RoleSession) -> String {
    numeric_id('3', &format!("{account}:role/{}", role.role_name), 17)
}

/// `GetCallerIdentity`'s answer, in the official SDKs' `GetCallerIdentityResponseBody` shape.
fn caller_identity(account: &str, caller: &Caller) -> Response {
    let request_id = new_request_id();
    let body = match caller {
        Caller::User => {
            let user_id = numeric_id('2', &format!("{account}:user/{USER_NAME}"), 16);
            json!({
                "RequestId": request_id,
                "IdentityType": "RAMUser",
                "AccountId": account,
                "Arn": format!("acs:ram::{account}:user/{USER_NAME}"),
                "UserId": user_id,
                "PrincipalId": user_id,
            })
        }
        Caller::Role(role) => {
            let role_id = role_id(account, role);
            let principal = format!("{role_id}:{}", role.session_name);
            json!({
                "RequestId": request_id,
                "IdentityType": "AssumedRoleUser",
                "AccountId": account,
                "Arn": assumed_role_arn(account, role),
                "UserId": principal,
                "PrincipalId": principal,
                "RoleId": role_id,
            })
        }
    };
    json_response(StatusCode::OK, &body, &request_id)
}

fn credentials(account: &str, call: &StsCall, id: &str, issued: &Issued) -> Response {
    let request_id = new_request_id();
    let mut body = json!({
        "RequestId": request_id,
        "AssumedRoleUser": {
            "AssumedRoleId": format!("{}:{}", role_id(account, &issued.role), issued.role.session_name),
            "Arn": assumed_role_arn(account, &issued.role),
        },
        "Credentials": {
            "AccessKeyId": id,
            "AccessKeySecret": issued.secret.expose_secret(),
            "SecurityToken": issued.token.expose_secret(),
            "Expiration": crate::acs::format_timestamp(issued.expires_at),
        },
    });
    if call.action == "AssumeRoleWithOIDC"
        && let Some(fields) = body.as_object_mut()
    {
        fields.insert(
            "OIDCTokenInfo".to_owned(),
            json!({"Issuer": "https://oidc.sandbox.local", "Subject": "system:serviceaccount:default:cams-flows", "ClientIds": "sts.aliyuncs.com"}),
        );
    }
    json_response(StatusCode::OK, &body, &request_id)
}

fn garbage() -> Response {
    let mut response = json_response(StatusCode::OK, &json!(null), "garbage");
    *response.body_mut() =
        axum::body::Body::from(r#"{"RequestId":"X","Credentials":{"AccessKeyId":"#);
    response
}

#[cfg(test)]
#[path = "sts_tests.rs"]
mod tests;
