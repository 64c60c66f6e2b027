//! The canonical query is both what is signed and what is sent, so it must be plain RFC 3986
//! (or the signature breaks at CAMS) and must decode to exactly the pairs it was built from (or
//! a value could smuggle in a parameter).
//!
//! Input: pairs separated by 0xFF, each `name 0xFE value`. Neither byte occurs in UTF-8, so the
//! split costs no string, and seeds stay readable.
#![no_main]

use cams_flows::acs::v3::{canonical_query, encode, parse_query};
use libfuzzer_sys::fuzz_target;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// Only unreserved bytes, `%XX` with upper-case hex, and the `=` and `&` the encoder adds.
fn assert_canonical_bytes(query: &str) {
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                assert!(
                    hex.is_some_and(|h| h.iter().all(|&b| is_upper_hex(b))),
                    "bad escape at {i} in {query:?}"
                );
                i += 3;
            }
            b'=' | b'&' => i += 1,
            b if is_unreserved(b) => i += 1,
            b => panic!("byte {b:#04x} at {i} in {query:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0xFF)
            .map(|pair| {
                let (name, value) = match pair.iter().position(|&b| b == 0xFE) {
                    Some(at) => (&pair[..at], &pair[at + 1..]),
                    None => (pair, &[][..]),
                };
                (
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                )
            })
            .collect()
    };

    let query = canonical_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(query.is_ascii());
    assert_canonical_bytes(&query);

    // Sorted as the encoder sorts: by the encoded bytes, which differ from the raw order
    // (`~` stays as is, `é` becomes `%C3%A9`).
    let mut sorted = pairs;
    sorted.sort_by_cached_key(|(k, v)| (encode(k), encode(v)));
    assert_eq!(
        parse_query(&query),
        Some(sorted),
        "{query:?} does not parse back"
    );
});
