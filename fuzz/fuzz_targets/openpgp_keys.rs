//! `parse_public_keys` on arbitrary bytes (a key file from `[trust]` or an
//! `ac-discovery-pubkeys` URL), and what is read off each parsed key.
#![no_main]

use imagelock::signing::openpgp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(keys) = openpgp::parse_public_keys(data) else {
        return;
    };
    for key in &keys {
        let _ = openpgp::format_fingerprint(key.fingerprint());
        let _ = (
            key.user_ids(),
            key.created(),
            key.expires(),
            key.is_revoked(),
        );
        let _ = key.subkey_fingerprints();
        let _ = key.armored();
    }
});
