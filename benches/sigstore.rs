//! Offline Sigstore verification time per bundle (issue 15's budget: under 2 ms for one
//! keyless bundle), with the built-in public-good root loaded once, and the time to load it.
//! The bundles are the unit tests' fixtures from the conformance suite.
//! Run: `cargo bench --bench sigstore`.

use std::time::{Duration, Instant};

use imagelock::digest::Digest;
use imagelock::signing::sigstore::{
    self, Content, Identity, Policy, Subject, TrustRoot, TrustedKey,
};

const CONTENT: &[u8] = include_bytes!("../tests/sigstore/fixtures/a.txt");
const KEYLESS: &[u8] = include_bytes!("../tests/sigstore/fixtures/keyless.sigstore.json");
const KEYLESS_DSSE: &[u8] = include_bytes!("../tests/sigstore/fixtures/keyless-dsse.sigstore.json");
const KEYED: &[u8] = include_bytes!("../tests/sigstore/fixtures/keyed.sigstore.json");
const KEYED_PUB: &[u8] = include_bytes!("../tests/sigstore/fixtures/keyed.pub");

const RUNS: usize = 200;

/// The median of `RUNS` timings of `f`.
fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let load = median(|| {
        std::hint::black_box(TrustRoot::public_good().expect("the built-in root"));
    });
    println!("load the public-good root:      {load:>10.2?}");

    let root = TrustRoot::public_good().expect("the built-in root");
    let identity = Policy {
        allow_unlogged: false,
        keys: Vec::new(),
        identities: vec![Identity {
            issuer: "https://token.actions.githubusercontent.com".to_owned(),
            subject: Subject::regexp("^https://github.com/sigstore-conformance/")
                .expect("a pattern"),
        }],
    };
    let keyed = Policy {
        allow_unlogged: false,
        keys: vec![TrustedKey::from_pem(KEYED_PUB, "keyed.pub").expect("a key")],
        identities: Vec::new(),
    };
    let digest = Digest::sha256_of(CONTENT);
    let cases: [(&str, &[u8], Content<'_>, &Policy); 3] = [
        (
            "keyless, message signature:",
            KEYLESS,
            Content::Bytes(CONTENT),
            &identity,
        ),
        (
            "keyless, DSSE by digest:",
            KEYLESS_DSSE,
            Content::Digest(&digest),
            &identity,
        ),
        (
            "keyed, message signature:",
            KEYED,
            Content::Bytes(CONTENT),
            &keyed,
        ),
    ];
    for (name, bundle, content, policy) in cases {
        let time = median(|| {
            sigstore::verify(bundle, content, policy, &root).expect("verifies");
        });
        println!("verify {name:<24}{time:>10.2?}");
    }
    println!("(medians of {RUNS} runs)");
}
