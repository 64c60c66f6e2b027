use std::fmt;

/// Longest identifier the gateway forwards. CAMS documents no limit; flow ids are ~16 digits and
/// space ids a short slug, so 128 bytes leaves room without letting a caller ship kilobytes.
pub(super) const MAX_ID_BYTES: usize = 128;

/// A caller's id as it may be logged or recorded whether or not it is valid: cut to the longest
/// valid length (at a character boundary), so that a hostile 16 KiB id costs a log line or a span
/// no more than a valid one.
pub fn as_logged(raw: &str) -> &str {
    if raw.len() <= MAX_ID_BYTES {
        return raw;
    }
    let mut end = MAX_ID_BYTES;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    &raw[..end]
}

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_BYTES} bytes, got {0}")]
    TooLong(usize),
    #[error("must not contain control characters (found U+{0:04X})")]
    ControlCharacter(u32),
}

/// A filter on flows' names, as ListFlow takes it: at most 128 bytes, no control characters,
/// empty for none.
pub fn check_flow_name(value: &str) -> Result<(), IdError> {
    check(value, true)
}

fn check(value: &str, allow_empty: bool) -> Result<(), IdError> {
    if value.is_empty() && !allow_empty {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong(value.len()));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(IdError::ControlCharacter(c as u32));
    }
    Ok(())
}

/// A CAMS flow id: 1..=128 bytes, no control characters. Any other character is allowed and
/// reaches CAMS as the literal value (the query encoder escapes it).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(String);

impl FlowId {
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check(&value, false)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The tenant a call is for: CAMS's `CustSpaceId`. Empty is the account's own space, which is a
/// tenant of its own for limits and caching.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check(&value, true)?;
        Ok(Self(value))
    }

    pub fn own_space() -> Self {
        Self(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of `CustSpaceId`, or `None` when the parameter must be left out.
    pub fn cust_space_id(&self) -> Option<&str> {
        (!self.0.is_empty()).then_some(self.0.as_str())
    }
}

// Debug and Display quote the value so that an empty tenant and odd characters stay visible in logs.
macro_rules! quoted_debug {
    ($t:ty) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}
quoted_debug!(FlowId);
quoted_debug!(TenantId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_ids_are_cut_at_a_character_boundary() {
        assert_eq!(as_logged("sim:ok:1"), "sim:ok:1");
        let long = "é".repeat(100); // 200 bytes, two per character
        assert_eq!(as_logged(&long), "é".repeat(64));
        let odd = format!("x{long}"); // the 128th byte falls inside a character
        assert_eq!(as_logged(&odd).len(), 127);
    }

    #[test]
    fn flow_id_rules() {
        assert_eq!(FlowId::parse(""), Err(IdError::Empty));
        assert_eq!(FlowId::parse("x".repeat(129)), Err(IdError::TooLong(129)));
        assert!(FlowId::parse("x".repeat(128)).is_ok());
        assert_eq!(FlowId::parse("1\n2"), Err(IdError::ControlCharacter(10)));
        assert_eq!(
            FlowId::parse("1\u{7f}"),
            Err(IdError::ControlCharacter(0x7f))
        );
        assert_eq!(
            FlowId::parse("a\u{85}"),
            Err(IdError::ControlCharacter(0x85))
        );
        for ok in ["333993838", "1&Action=DeleteFlow", "100%", "名字", "a b"] {
            assert_eq!(
                FlowId::parse(ok).map(|f| f.as_str().to_owned()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn tenant_rules() {
        assert_eq!(
            TenantId::parse("").map(|t| t.cust_space_id().is_none()),
            Ok(true)
        );
        assert_eq!(
            TenantId::parse("cams-kei1").map(|t| t.cust_space_id() == Some("cams-kei1")),
            Ok(true)
        );
        assert_eq!(TenantId::parse("a\tb"), Err(IdError::ControlCharacter(9)));
        assert!(TenantId::parse("y".repeat(200)).is_err());
    }
}
