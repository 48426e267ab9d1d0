//! Signature checking on arbitrary bytes against a fixed keyring of the
//! TEST-ONLY fixture keys: `check_issuer` and `verify_detached` over the fixed
//! `data.bin`, and `verify_message` (signed messages, as simple signing uses).
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use imagelock::signing::openpgp::{self, Keyring};
use libfuzzer_sys::fuzz_target;

/// RSA and Ed25519 primaries, and a certify-only primary with a signing subkey.
const KEYS: [&[u8]; 2] = [
    include_bytes!("../../tests/fixtures/openpgp/rsa-and-ed25519.asc"),
    include_bytes!("../../tests/fixtures/openpgp/subkey.asc"),
];
/// What the fixture detached signatures sign.
const DATA: &[u8] = include_bytes!("../../tests/fixtures/openpgp/data.bin");

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let keys = KEYS
            .iter()
            .flat_map(|armored| match openpgp::parse_public_keys(armored) {
                Ok(keys) => keys,
                Err(e) => panic!("fixture key does not parse: {e}"),
            })
            .collect();
        Keyring::new(keys)
    })
}

fuzz_target!(|data: &[u8]| {
    let keyring = keyring();
    // A fixed "now" (2027-01-15) keeps runs reproducible.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = keyring.check_issuer(data);
    if let Err(error) = keyring.verify_detached(data, DATA, now) {
        let _ = error.to_string();
    }
    if let Err(error) = keyring.verify_message(data, now) {
        let _ = error.to_string();
    }
});
