//! OCI platforms (`os/arch[/variant]`) and containerd-style choice of an image index entry.
//!
//! Pure functions, no I/O (specs/oci.md §3). Invariants:
//! - a [`Platform`] keeps its fields exactly as written (in the index or by the user); only
//!   [`Platform::normalized`] rewrites them, and `Display` prints them unchanged;
//! - [`select`] normalises both sides before comparing, never picks an `unknown` (attestation)
//!   entry, ranks entries without a platform after every real match, and among equally good
//!   entries picks the first in index order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// An OCI platform as it appears in an image index entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's GOARCH spelling, e.g. `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// Operating system in Go's GOOS spelling, e.g. `linux`, `windows`.
    pub os: String,
    /// CPU variant, e.g. `v7` for `arm` or `v8` for `arm64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version`, used by Windows images, e.g. `10.0.17763.1879`.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// `os.features` the image requires of the host, e.g. `win32k`.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub os_features: Vec<String>,
}

/// Why a `OS/ARCH[/VARIANT]` platform string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid platform `{input}`: {reason}; expected OS/ARCH[/VARIANT], e.g. `linux/amd64` or `linux/arm/v7`"
)]
pub struct PlatformParseError {
    /// The platform string as written.
    pub input: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl Platform {
    /// The platform an image config's JSON names (its `os`, `architecture`, `variant`).
    pub fn of_config(config: &[u8]) -> serde_json::Result<Platform> {
        #[derive(Deserialize)]
        struct ConfigPlatform {
            #[serde(flatten)]
            platform: Platform,
        }
        serde_json::from_slice::<ConfigPlatform>(config).map(|c| c.platform)
    }

    /// A platform with the given fields and no `os.version` or `os.features`.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            variant: variant.map(str::to_owned),
            os_version: None,
            os_features: Vec::new(),
        }
    }

    /// This platform normalised as containerd does, so that equal platforms compare equal.
    ///
    /// Lowercases; `macos`→`darwin`; `x86_64`/`x86-64`→`amd64` (variant `v1` dropped);
    /// `aarch64`→`arm64` (variant `8`/`v8`/`v8.0` dropped, `9`/`9.0`/`v9.0`→`v9`); `i386`→`386`;
    /// `armhf`→`arm/v7`; `armel`→`arm/v6`; `arm` without variant or with `7`→`arm/v7`,
    /// `5`/`6`/`8`→`v5`/`v6`/`v8`. An empty variant becomes `None`; os.version/features are kept.
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) = normalize_arch(&self.architecture, self.variant.as_deref());
        Platform {
            architecture,
            os: normalize_os(&self.os),
            variant,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
        }
    }

    /// The platform this binary was built for, in GOOS/GOARCH names (e.g. `linux/amd64`).
    pub fn host() -> Platform {
        let architecture = goarch(std::env::consts::ARCH, cfg!(target_endian = "little"));
        Platform::new(
            goos(std::env::consts::OS),
            architecture,
            host_variant(architecture),
        )
    }

    /// True for attestation-style entries whose os or architecture is `unknown`.
    pub fn is_unknown(&self) -> bool {
        self.os.eq_ignore_ascii_case("unknown") || self.architecture.eq_ignore_ascii_case("unknown")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant.as_deref() {
            Some(variant) if !variant.is_empty() => write!(f, "/{variant}"),
            _ => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformParseError;

    /// Parses `OS/ARCH[/VARIANT]` as written, without normalising.
    fn from_str(input: &str) -> Result<Platform, PlatformParseError> {
        let error = |reason: String| PlatformParseError {
            input: input.to_owned(),
            reason,
        };
        let parts: Vec<&str> = input.split('/').collect();
        for part in &parts {
            check_platform_part(part).map_err(error)?;
        }
        match parts.as_slice() {
            [os, architecture] => Ok(Platform::new(os, architecture, None)),
            [os, architecture, variant] => Ok(Platform::new(os, architecture, Some(variant))),
            _ => Err(error(format!("it has {} '/'-separated parts", parts.len()))),
        }
    }
}

/// One `/`-separated part of a platform string: containerd's specifier `[A-Za-z0-9_.-]+`.
fn check_platform_part(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("it has an empty part".to_owned());
    }
    match part
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(bad) => Err(format!(
            "`{part}` contains `{bad}`; only letters, digits, '_', '.' and '-' are allowed"
        )),
        None => Ok(()),
    }
}

/// Index of the entry to use for `wanted`, containerd-style, or `None` when nothing can run.
///
/// `entries` are the index entries' platforms in index order (`None`: entry without one). Both
/// sides are normalised; `wanted` expands to an ordered preference list (amd64/vN → vN…v1, then
/// 386; arm/vN → vN…v5; arm64 → arm64 variants down to v8, then arm/v8, v7, v6, v5). An entry
/// matches when its os equals wanted's, its arch/variant is in the list and its `os.features`
/// are a subset of wanted's; the better list position wins and ties go to the earlier entry.
/// `unknown` entries are never picked; entries without a platform match but rank last.
pub fn select(wanted: &Platform, entries: &[Option<&Platform>]) -> Option<usize> {
    let wanted = wanted.normalized();
    let preferences = preference_list(&wanted);
    let platformless_rank = preferences.len();
    let mut best: Option<(usize, usize)> = None;
    for (index, entry) in entries.iter().enumerate() {
        let rank = match entry {
            None => Some(platformless_rank),
            Some(platform) if platform.is_unknown() => None,
            Some(platform) => rank(&wanted, &preferences, &platform.normalized()),
        };
        // Strictly better only, so the first entry wins a tie.
        if let Some(rank) = rank
            && best.is_none_or(|(best_rank, _)| rank < best_rank)
        {
            best = Some((rank, index));
        }
    }
    best.map(|(_, index)| index)
}

/// A normalised (architecture, variant) pair `wanted` can run.
type ArchVariant = (String, Option<String>);

/// Position of a normalised `entry` in `preferences`, or `None` when it does not match `wanted`.
fn rank(wanted: &Platform, preferences: &[ArchVariant], entry: &Platform) -> Option<usize> {
    if entry.os != wanted.os
        || !entry
            .os_features
            .iter()
            .all(|feature| wanted.os_features.contains(feature))
    {
        return None;
    }
    preferences
        .iter()
        .position(|(arch, variant)| *arch == entry.architecture && *variant == entry.variant)
}

/// containerd `platformVector`: the normalised architectures/variants a normalised `wanted` can
/// run, best first.
fn preference_list(wanted: &Platform) -> Vec<ArchVariant> {
    let arch = wanted.architecture.as_str();
    let variant = wanted.variant.as_deref();
    let mut list: Vec<(&str, String)> = Vec::new();
    match arch {
        "amd64" => {
            list.push((arch, variant.unwrap_or_default().to_owned()));
            if let Some(level) = variant.and_then(variant_number) {
                list.extend((1..level).rev().map(|n| ("amd64", format!("v{n}"))));
            }
            list.push(("386", String::new()));
        }
        "arm" => {
            list.push((arch, variant.unwrap_or_default().to_owned()));
            if let Some(level) = variant.and_then(variant_number) {
                list.extend((5..level).rev().map(|n| ("arm", format!("v{n}"))));
            }
        }
        "arm64" => {
            list.extend(arm64_variants(variant).into_iter().map(|v| ("arm64", v)));
            // Every arm64 CPU also runs 32-bit arm code up to v8.
            list.extend((5..=8).rev().map(|n| ("arm", format!("v{n}"))));
        }
        _ => list.push((arch, variant.unwrap_or_default().to_owned())),
    }
    list.into_iter()
        .map(|(arch, variant)| normalize_arch(arch, Some(&variant)))
        .collect()
}

/// arm64 variants compatible with a normalised `variant`, best first: `v8.x` walks down to
/// `v8.0`; `v9.x` walks down to `v9.0` and then from `v8.(x+5)` (containerd's table: v9.0 ⊇ v8.5).
fn arm64_variants(variant: Option<&str>) -> Vec<String> {
    let written = variant.unwrap_or("v8");
    let parsed = written.strip_prefix('v').and_then(|number| {
        let (major, minor) = number.split_once('.').unwrap_or((number, "0"));
        Some((major.parse::<u8>().ok()?, minor.parse::<u8>().ok()?))
    });
    let mut variants = Vec::new();
    match parsed {
        Some((9, minor)) => {
            variants.extend((0..=minor).rev().map(|m| format!("v9.{m}")));
            let v8_minor = minor.saturating_add(5);
            variants.extend((0..=v8_minor).rev().map(|m| format!("v8.{m}")));
        }
        Some((8, minor)) => variants.extend((0..=minor).rev().map(|m| format!("v8.{m}"))),
        _ => variants.push(written.to_owned()),
    }
    variants
}

/// The level in a `vN` (or bare `N`) variant; small on purpose so expansion stays short.
fn variant_number(variant: &str) -> Option<u8> {
    variant.strip_prefix('v').unwrap_or(variant).parse().ok()
}

/// containerd `normalizeOS` for a non-empty os: lowercase, `macos` → `darwin`.
fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    if os == "macos" {
        "darwin".to_owned()
    } else {
        os
    }
}

/// containerd `normalizeArch`; an empty variant comes back as `None`.
fn normalize_arch(architecture: &str, variant: Option<&str>) -> (String, Option<String>) {
    let architecture = architecture.to_ascii_lowercase();
    let variant = variant.unwrap_or_default().to_ascii_lowercase();
    let (architecture, variant) = match architecture.as_str() {
        "i386" => ("386", ""),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64",
            if variant == "v1" {
                ""
            } else {
                variant.as_str()
            },
        ),
        "aarch64" | "arm64" => (
            "arm64",
            match variant.as_str() {
                "8" | "v8" | "v8.0" => "",
                "9" | "9.0" | "v9.0" => "v9",
                other => other,
            },
        ),
        "armhf" => ("arm", "v7"),
        "armel" => ("arm", "v6"),
        "arm" => (
            "arm",
            match variant.as_str() {
                "" | "7" => "v7",
                "5" => "v5",
                "6" => "v6",
                "8" => "v8",
                other => other,
            },
        ),
        other => (other, variant.as_str()),
    };
    (
        architecture.to_owned(),
        (!variant.is_empty()).then(|| variant.to_owned()),
    )
}

/// Rust's `std::env::consts::OS` in Go's GOOS spelling.
fn goos(rust_os: &str) -> &str {
    match rust_os {
        "macos" => "darwin",
        other => other,
    }
}

/// Rust's `std::env::consts::ARCH` in Go's GOARCH spelling.
fn goarch(rust_arch: &str, little_endian: bool) -> &str {
    match (rust_arch, little_endian) {
        ("x86_64", _) => "amd64",
        ("x86", _) => "386",
        ("aarch64", _) => "arm64",
        ("powerpc64", true) => "ppc64le",
        ("powerpc64", false) => "ppc64",
        ("powerpc", _) => "ppc",
        ("mips", true) => "mipsle",
        ("mips64", true) => "mips64le",
        ("loongarch64", _) => "loong64",
        ("wasm32", _) => "wasm",
        // arm, riscv64, s390x, mips, mips64, sparc64 are spelt the same in both.
        (other, _) => other,
    }
}

/// The host CPU variant as far as the build target tells: 32-bit arm reports the ISA level it
/// was compiled for (containerd reads /proc/cpuinfo instead, which would be I/O); others none.
fn host_variant(goarch: &str) -> Option<&'static str> {
    if goarch != "arm" {
        None
    } else if cfg!(target_feature = "v8") {
        Some("v8")
    } else if cfg!(target_feature = "v7") {
        Some("v7")
    } else if cfg!(target_feature = "v6") {
        Some("v6")
    } else {
        Some("v5")
    }
}

/// Accepts `null` where a list is expected, as Go's JSON decoder does.
fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse()
            .unwrap_or_else(|e| panic!("test platform {text:?}: {e}"))
    }

    #[test]
    fn normalisation_follows_containerd() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/x86_64/v1", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/i386", "linux/386"),
            ("linux/i386/whatever", "linux/386"),
            ("linux/386", "linux/386"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/arm64/v8.0", "linux/arm64"),
            ("linux/arm64/V8", "linux/arm64"),
            ("linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/arm64/v9.0", "linux/arm64/v9"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armhf/v6", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/5", "linux/arm/v5"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/arm/8", "linux/arm/v8"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("macos/arm64", "darwin/arm64"),
            ("MacOS/x86_64", "darwin/amd64"),
            ("windows/amd64", "windows/amd64"),
            ("linux/s390x", "linux/s390x"),
            ("linux/ppc64le", "linux/ppc64le"),
            ("linux/riscv64/rva20u64", "linux/riscv64/rva20u64"),
        ];
        for (input, expected) in cases {
            let normalized = platform(input).normalized();
            assert_eq!(normalized.to_string(), expected, "{input}");
            assert_eq!(normalized, platform(expected).normalized(), "{input}");
            // Normalising is idempotent.
            assert_eq!(normalized.normalized(), normalized, "{input}");
        }
    }

    #[test]
    fn normalisation_keeps_os_version_and_features() {
        let mut windows = Platform::new("Windows", "X86_64", None);
        windows.os_version = Some("10.0.17763.1879".to_owned());
        windows.os_features = vec!["win32k".to_owned()];
        let normalized = windows.normalized();
        assert_eq!(normalized.os, "windows");
        assert_eq!(normalized.architecture, "amd64");
        assert_eq!(normalized.os_version, windows.os_version);
        assert_eq!(normalized.os_features, windows.os_features);
    }

    #[test]
    fn empty_variant_normalises_to_none() {
        let normalized = Platform::new("linux", "amd64", Some("")).normalized();
        assert_eq!(normalized.variant, None);
    }

    /// An index like Docker Hub's: three platforms plus a buildx attestation entry.
    fn docker_hub_index() -> Vec<Platform> {
        [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "unknown/unknown",
        ]
        .into_iter()
        .map(platform)
        .collect()
    }

    fn pick(wanted: &str, index: &[Option<Platform>]) -> Option<usize> {
        let entries: Vec<Option<&Platform>> = index.iter().map(Option::as_ref).collect();
        select(&platform(wanted), &entries)
    }

    fn index_of(platforms: &[&str]) -> Vec<Option<Platform>> {
        platforms
            .iter()
            .map(|&text| (text != "-").then(|| platform(text)))
            .collect()
    }

    #[test]
    fn select_from_a_multi_arch_index() {
        let index: Vec<Option<Platform>> = docker_hub_index().into_iter().map(Some).collect();
        let cases = [
            ("linux/arm64", Some(1)),
            ("linux/arm64/v8", Some(1)),
            ("linux/aarch64", Some(1)),
            ("linux/amd64", Some(0)),
            ("linux/x86_64", Some(0)),
            ("linux/amd64/v3", Some(0)),
            ("linux/arm/v7", Some(2)),
            ("linux/arm", Some(2)),
            ("linux/armhf", Some(2)),
            ("linux/arm/v8", Some(2)),
            ("linux/arm/v6", None),
            ("linux/arm/v5", None),
            ("linux/386", None),
            ("linux/s390x", None),
            ("windows/amd64", None),
            ("unknown/unknown", None),
        ];
        for (wanted, expected) in cases {
            assert_eq!(pick(wanted, &index), expected, "wanted {wanted}");
        }
    }

    #[test]
    fn select_walks_down_variant_levels() {
        let cases: &[(&str, &[&str], Option<usize>)] = &[
            // arm/v6 matches nothing in a v7 index, but takes v6 or v5 when present.
            ("linux/arm/v6", &["linux/arm/v7", "linux/arm/v5"], Some(1)),
            ("linux/arm/v6", &["linux/arm/v5", "linux/arm/v6"], Some(1)),
            ("linux/arm/v7", &["linux/arm/v5", "linux/arm/v6"], Some(1)),
            // amd64 falls back to older levels, then to 386, preferring the best level.
            ("linux/amd64", &["linux/arm64", "linux/386"], Some(1)),
            ("linux/amd64", &["linux/386", "linux/amd64"], Some(1)),
            (
                "linux/amd64/v3",
                &["linux/amd64", "linux/amd64/v2"],
                Some(1),
            ),
            ("linux/amd64/v3", &["linux/386", "linux/amd64/v4"], Some(0)),
            ("linux/amd64", &["linux/amd64/v2"], None),
            // arm64 prefers arm64, then 32-bit arm from v8 down.
            ("linux/arm64", &["linux/arm/v6", "linux/arm/v7"], Some(1)),
            ("linux/arm64", &["linux/arm/v7", "linux/arm64"], Some(1)),
            ("linux/arm64", &["linux/arm64/v8.2"], None),
            (
                "linux/arm64/v8.2",
                &["linux/arm64", "linux/arm64/v8.1"],
                Some(1),
            ),
            (
                "linux/arm64/v9",
                &["linux/arm64/v8.5", "linux/arm64/v8.6"],
                Some(0),
            ),
            (
                "linux/arm64/v9.1",
                &["linux/arm64/v8.6", "linux/arm64/v9"],
                Some(1),
            ),
            ("linux/arm64/v9", &["linux/arm/v5"], Some(0)),
            // Raw spellings from the index are normalised too.
            ("linux/arm/v7", &["linux/armhf"], Some(0)),
            ("linux/arm64", &["Linux/AArch64/8"], Some(0)),
        ];
        for &(wanted, platforms, expected) in cases {
            assert_eq!(
                pick(wanted, &index_of(platforms)),
                expected,
                "wanted {wanted} from {platforms:?}"
            );
        }
    }

    #[test]
    fn select_never_picks_unknown_entries() {
        let index = index_of(&["unknown/unknown", "unknown/amd64", "linux/unknown"]);
        assert_eq!(pick("linux/amd64", &index), None);
        assert_eq!(pick("unknown/unknown", &index), None);
        // Not even as the platform-less fallback would be.
        let index = index_of(&["unknown/unknown", "-"]);
        assert_eq!(pick("linux/amd64", &index), Some(1));
    }

    #[test]
    fn select_uses_platformless_entries_only_as_a_last_resort() {
        let cases: &[(&str, &[&str], Option<usize>)] = &[
            ("linux/amd64", &["-", "linux/amd64"], Some(1)),
            ("linux/amd64", &["-", "linux/386"], Some(1)),
            ("linux/amd64", &["-", "linux/arm64"], Some(0)),
            ("linux/amd64", &["linux/arm64", "-", "-"], Some(1)),
            ("linux/amd64", &[], None),
        ];
        for &(wanted, platforms, expected) in cases {
            assert_eq!(
                pick(wanted, &index_of(platforms)),
                expected,
                "wanted {wanted} from {platforms:?}"
            );
        }
    }

    #[test]
    fn select_breaks_ties_by_index_order() {
        let cases: &[(&str, &[&str], Option<usize>)] = &[
            ("linux/amd64", &["linux/amd64", "linux/amd64"], Some(0)),
            ("linux/amd64", &["linux/x86_64", "linux/amd64"], Some(0)),
            (
                "linux/amd64",
                &["linux/arm64", "linux/amd64/v1", "linux/amd64"],
                Some(1),
            ),
            ("linux/arm64", &["linux/arm64", "linux/arm64/v8"], Some(0)),
        ];
        for &(wanted, platforms, expected) in cases {
            assert_eq!(
                pick(wanted, &index_of(platforms)),
                expected,
                "wanted {wanted} from {platforms:?}"
            );
        }
    }

    #[test]
    fn select_requires_entry_os_features_to_be_wanted() {
        let mut plain = Platform::new("windows", "amd64", None);
        plain.os_version = Some("10.0.20348.2340".to_owned());
        let mut win32k = plain.clone();
        win32k.os_features = vec!["win32k".to_owned()];
        let entries = [Some(&win32k), Some(&plain)];
        let mut wanted = Platform::new("windows", "amd64", None);
        assert_eq!(select(&wanted, &entries), Some(1));
        wanted.os_features = vec!["win32k".to_owned()];
        assert_eq!(select(&wanted, &entries), Some(0));
        assert_eq!(select(&wanted, &entries[..1]), Some(0));
    }

    #[test]
    fn from_str_and_display_round_trip() {
        for text in [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "Linux/X86_64",
            "windows/amd64",
        ] {
            let parsed = platform(text);
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(
            platform("linux/arm/v7"),
            Platform::new("linux", "arm", Some("v7"))
        );
        assert_eq!(
            platform("linux/amd64"),
            Platform::new("linux", "amd64", None)
        );
        // Display shows the stored fields, not normalised ones.
        assert_eq!(
            Platform::new("linux", "aarch64", Some("8")).to_string(),
            "linux/aarch64/8"
        );
        assert_eq!(
            Platform::new("linux", "arm", Some("")).to_string(),
            "linux/arm"
        );
    }

    #[test]
    fn from_str_rejects_malformed_platforms() {
        for input in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux//v7",
            "linux/arm/v7/x",
            "linux/amd 64",
            "linux/amd64/",
        ] {
            let error = input
                .parse::<Platform>()
                .expect_err(&format!("{input:?} must be rejected"));
            assert_eq!(error.input, input);
            let message = error.to_string();
            assert!(message.contains(&format!("`{input}`")), "{message}");
            assert!(message.contains("OS/ARCH[/VARIANT]"), "{message}");
        }
    }

    #[test]
    fn serde_round_trips_index_entry_platforms() {
        let json = r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#;
        let parsed: Platform = serde_json::from_str(json).expect("valid platform JSON");
        assert_eq!(parsed, Platform::new("linux", "arm64", Some("v8")));
        assert_eq!(serde_json::to_string(&parsed).expect("serialisable"), json);

        let json = r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1879","os.features":["win32k"]}"#;
        let parsed: Platform = serde_json::from_str(json).expect("valid platform JSON");
        assert_eq!(parsed.os_version.as_deref(), Some("10.0.17763.1879"));
        assert_eq!(parsed.os_features, ["win32k"]);
        assert_eq!(serde_json::to_string(&parsed).expect("serialisable"), json);

        // Reserved `features`, explicit nulls and missing optionals are tolerated.
        let json = r#"{"os":"linux","architecture":"amd64","variant":null,"os.features":null,"features":["sse4"]}"#;
        let parsed: Platform = serde_json::from_str(json).expect("valid platform JSON");
        assert_eq!(parsed, Platform::new("linux", "amd64", None));
        assert_eq!(
            serde_json::to_string(&parsed).expect("serialisable"),
            r#"{"architecture":"amd64","os":"linux"}"#
        );

        assert!(serde_json::from_str::<Platform>(r#"{"os":"linux"}"#).is_err());
    }

    #[test]
    fn is_unknown_flags_attestation_entries() {
        assert!(platform("unknown/unknown").is_unknown());
        assert!(platform("linux/unknown").is_unknown());
        assert!(platform("Unknown/amd64").is_unknown());
        assert!(!platform("linux/amd64").is_unknown());
    }

    #[test]
    fn host_uses_go_names() {
        let cases = [
            (("x86_64", true), "amd64"),
            (("x86", true), "386"),
            (("aarch64", true), "arm64"),
            (("arm", true), "arm"),
            (("powerpc64", true), "ppc64le"),
            (("powerpc64", false), "ppc64"),
            (("mips", true), "mipsle"),
            (("mips", false), "mips"),
            (("riscv64", true), "riscv64"),
            (("s390x", false), "s390x"),
            (("loongarch64", true), "loong64"),
        ];
        for ((arch, little_endian), expected) in cases {
            assert_eq!(goarch(arch, little_endian), expected, "{arch}");
        }
        assert_eq!(goos("macos"), "darwin");
        assert_eq!(goos("linux"), "linux");
        assert_eq!(host_variant("amd64"), None);

        let host = Platform::host();
        assert_eq!(host.normalized(), host, "host() is already normalised");
        assert!(!host.to_string().contains("x86_64") && !host.to_string().contains("aarch64"));
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }
}
