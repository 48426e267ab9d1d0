//! Digest throughput: imagelock's streaming hasher against the machine's
//! SHA-256 rate (`openssl speed`, when installed), in one run.
//! Run: `cargo bench --bench digest`.

use std::process::Command;
use std::time::Instant;

use imagelock::digest::{Algorithm, Hasher};

/// Enough data that timer resolution and warm-up don't matter.
const TOTAL_BYTES: usize = 512 * 1024 * 1024;
/// The chunk size the network path typically hands the hasher.
const CHUNK_BYTES: usize = 64 * 1024;

fn main() {
    let chunk: Vec<u8> = (0..CHUNK_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut hasher = Hasher::new(Algorithm::Sha256);
        for _ in 0..TOTAL_BYTES / CHUNK_BYTES {
            hasher.update(&chunk);
        }
        std::hint::black_box(hasher.finish());
        best = best.min(started.elapsed().as_secs_f64());
    }
    let ours = TOTAL_BYTES as f64 / best / 1e6;
    println!(
        "imagelock sha256: {ours:.0} MB/s (best of 3, {} MiB in {CHUNK_BYTES}-byte chunks)",
        TOTAL_BYTES >> 20
    );
    let openssl = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "2",
        ])
        .output();
    match openssl {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            // The last line is "sha256  <bytes/s in 1000s>k"; take its last field.
            let rate = text
                .lines()
                .last()
                .and_then(|l| l.split_whitespace().last())
                .and_then(|f| f.trim_end_matches('k').parse::<f64>().ok())
                .map(|k| k * 1000.0 / 1e6);
            match rate {
                Some(rate) => println!(
                    "openssl sha256:   {rate:.0} MB/s; imagelock/openssl = {:.0}%",
                    ours / rate * 100.0
                ),
                None => println!("openssl speed output not understood:\n{text}"),
            }
        }
        _ => println!("openssl not available: no machine reference rate"),
    }
}
