//! Alibaba Cloud request signatures, shared by every client that talks to an Alibaba Cloud API
//! (the CAMS client with ACS3, the STS client with the RPC signature for AssumeRole) and by the
//! simulated services, which verify what the clients sign. One implementation serves both sides
//! so that the official test vectors pin them at once. Beside them, the other facts of the calls
//! to CAMS that both sides speak ([`openapi`]).

pub mod openapi;
pub mod rpc;
pub mod v3;

use std::time::SystemTime;

/// Exactly `yyyy-MM-ddTHH:mm:ssZ`, the one form Alibaba Cloud writes times in: ACS3's
/// `x-acs-date`, the RPC `Timestamp`, STS's and the metadata service's `Expiration`. No
/// fraction, no offset.
pub fn parse_timestamp(value: &str) -> Option<SystemTime> {
    let shaped = value.len() == 20
        && value.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shaped {
        return None;
    }
    humantime::parse_rfc3339(value).ok()
}

/// A time in that form (whole seconds, UTC).
pub fn format_timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_strict() {
        let at = parse_timestamp("2021-10-20T04:27:09Z").expect("valid");
        assert_eq!(format_timestamp(at), "2021-10-20T04:27:09Z");
        for bad in [
            "2021-10-20T04:27:09.5Z",
            "2021-10-20T04:27:09+08:00",
            "2021-10-20 04:27:09Z",
            "2021-13-20T04:27:09Z",
            "Thu, 26 Oct 2023 10:22:32 GMT",
            "",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad}");
        }
    }
}
