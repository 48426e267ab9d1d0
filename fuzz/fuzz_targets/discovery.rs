//! appc discovery: `parse_meta` on an arbitrary HTML page, then rendering its
//! templates with `render_endpoints` for a name and labels taken from the input.
//!
//! Input: a first line `NAME[\tLABEL=VALUE]...`, then the page.
#![no_main]

use std::collections::BTreeMap;

use imagelock::appc::discovery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, html) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b"example.com/app"[..], data),
    };
    let first = String::from_utf8_lossy(first);
    let mut fields = first.split('\t');
    let name = fields.next().unwrap_or_default();
    let labels: BTreeMap<String, String> = fields
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    let metas = discovery::parse_meta(html);
    for meta in &metas {
        assert!(!meta.prefix.is_empty() && !meta.url.is_empty(), "{meta:?}");
    }
    let _ = discovery::check_labels(&labels);
    let _ = discovery::levels(name);
    let _ = discovery::pubkey_urls(name, &metas);
    let endpoints = discovery::render_endpoints(name, &labels, &metas);
    let _ = discovery::first_fetchable(&endpoints, |host| host.starts_with("localhost"));
});
