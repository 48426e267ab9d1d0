//! `Reference::parse` on arbitrary text. A reference that parses must print
//! (canonical and familiar forms) to text that parses back to itself: the lock
//! stores the canonical form and `sync` parses it again.
#![no_main]

use imagelock::oci::reference::{self, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let _ = reference::is_name_only(input);
    let _ = reference::validate_digest(input);
    let Ok(parsed) = Reference::parse(input) else {
        return;
    };
    // Every accessor a caller may use on a parsed reference.
    let _ = (
        parsed.domain(),
        parsed.path(),
        parsed.repository(),
        parsed.api_host(),
        parsed.tag_or_digest(),
    );
    let canonical = parsed.to_string();
    match Reference::parse(&canonical) {
        Ok(again) => assert_eq!(again, parsed, "canonical form {canonical:?} of {input:?}"),
        Err(e) => panic!("canonical form {canonical:?} of {input:?} does not parse: {e}"),
    }
    let familiar = parsed.familiar();
    match Reference::parse(&familiar) {
        Ok(again) => assert_eq!(again, parsed, "familiar form {familiar:?} of {input:?}"),
        Err(e) => panic!("familiar form {familiar:?} of {input:?} does not parse: {e}"),
    }
});
