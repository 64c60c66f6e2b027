//! What went wrong in an HTTP exchange, in words: shared by the CAMS client and the credential
//! providers that fetch over HTTP, so that both describe a failure alike and neither can leak
//! what the URL carries (caller input, a signature, a token). Timeouts are told apart by the
//! callers, since each knows which of its bounds ran out.

/// A transport failure, described.
pub(crate) struct Failure {
    /// Which part of the exchange failed.
    pub(crate) what: &'static str,
    /// The innermost cause's message (the OS or TLS error), which is what an operator acts on.
    pub(crate) detail: String,
    /// The error itself, with its URL removed.
    pub(crate) error: reqwest::Error,
}

pub(crate) fn describe(err: reqwest::Error) -> Failure {
    let what = if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "the response body broke off"
    } else if err.is_request() {
        "the request failed"
    } else {
        "transport error"
    };
    let error = err.without_url();
    let mut detail = String::new();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    Failure {
        what,
        detail,
        error,
    }
}
