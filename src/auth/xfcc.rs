//! Envoy's `x-forwarded-client-cert` header, as a mesh sidecar sets it.

/// The `URI=` of the element a sidecar appended last to `x-forwarded-client-cert` (Envoy's
/// format: elements separated by `,`, pairs by `;`, values optionally quoted).
pub(crate) fn forwarded_uri(header: &str) -> Option<String> {
    let element = split_unquoted(header, ',').into_iter().last()?;
    split_unquoted(element, ';').into_iter().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("uri") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(|v| v.replace("\\\"", "\""))
            .unwrap_or_else(|| value.to_owned());
        (!value.is_empty()).then_some(value)
    })
}

fn split_unquoted(s: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_client_cert() {
        let h = r#"By=spiffe://cluster.local/ns/gw/sa/cams;Hash=abc;Subject="CN=x,O=y";URI=spiffe://cluster.local/ns/billing/sa/api"#;
        assert_eq!(
            forwarded_uri(h).as_deref(),
            Some("spiffe://cluster.local/ns/billing/sa/api")
        );
        // The last element is the one the sidecar in front of the gateway added.
        let two = "URI=spiffe://a,By=x;URI=spiffe://b";
        assert_eq!(forwarded_uri(two).as_deref(), Some("spiffe://b"));
        assert_eq!(
            forwarded_uri(r#"uri="spiffe://q""#).as_deref(),
            Some("spiffe://q")
        );
        assert_eq!(forwarded_uri("Hash=abc"), None);
        assert_eq!(forwarded_uri("URI="), None);
        assert_eq!(forwarded_uri(""), None);
    }
}
