//! `parse_claim`: the JSON payload inside a simple-signing ("atomic container
//! signature") message, which comes from a registry's lookaside server.
#![no_main]

use imagelock::signing::simple_signing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = simple_signing::parse_claim(data) {
        // Messages and hints are printed to the user: building them must not fail.
        let _ = (error.to_string(), error.hint());
    }
});
