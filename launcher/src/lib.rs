//! Picks the build of a program that this CPU can run.
//!
//! The images hold one build per x86-64 microarchitecture level, as
//! `<dir>/<program>.<level>` (e.g. `/usr/local/libexec/mooring/inference-server.x86-64-v3` and
//! `….x86-64`), and this launcher as `/usr/local/bin/<program>`. It runs the highest level whose
//! CPU features are all present, or, when none is, exits with one line naming the missing
//! features, instead of the SIGILL a v3 build dies of on a CPU without AVX2. It execs (replaces
//! itself by) the build, so the server keeps PID 1 and receives SIGTERM directly.
//!
//! The decision ([`choose`]) is a pure function of the levels installed and a feature test;
//! [`detected`] asks the CPU (CPUID, through `is_x86_feature_detected!`).
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the images install the builds.
pub const DEFAULT_DIR: &str = "/usr/local/libexec/mooring";
/// Overrides [`DEFAULT_DIR`].
pub const DIR_ENV: &str = "MOORING_LAUNCHER_DIR";
/// Comma-separated CPU features to treat as absent, e.g. `avx2`: runs (and so tests) the
/// fallback on a CPU that has them.
pub const DISABLE_ENV: &str = "MOORING_LAUNCHER_DISABLE";

/// An x86-64 microarchitecture level (the psABI's, as rustc's `-C target-cpu` names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Baseline x86-64 (SSE2): every x86-64 CPU.
    V1,
    /// x86-64-v2: Nehalem (2008) and later.
    V2,
    /// x86-64-v3: Haswell (2013), Excavator (2015) and later.
    V3,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::V1, Level::V2, Level::V3];

    /// The `-C target-cpu` name, also the file suffix of the build.
    pub fn name(self) -> &'static str {
        match self {
            Level::V1 => "x86-64",
            Level::V2 => "x86-64-v2",
            Level::V3 => "x86-64-v3",
        }
    }

    pub fn from_name(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The CPU features code built for this level may use, beyond baseline x86-64 (as
    /// `is_x86_feature_detected!` names them; LAHF/SAHF of v2 has no name there and is
    /// present on every CPU that has the others).
    pub fn features(self) -> &'static [&'static str] {
        const V2: &[&str] = &["cmpxchg16b", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"];
        const V3: &[&str] = &[
            "cmpxchg16b",
            "popcnt",
            "sse3",
            "sse4.1",
            "sse4.2",
            "ssse3",
            "avx",
            "avx2",
            "bmi1",
            "bmi2",
            "f16c",
            "fma",
            "lzcnt",
            "movbe",
            "xsave",
        ];
        match self {
            Level::V1 => &[],
            Level::V2 => V2,
            Level::V3 => V3,
        }
    }
}

/// No installed build can run on this CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The lowest installed level needs features the CPU lacks.
    MissingFeatures {
        level: Level,
        missing: Vec<&'static str>,
    },
    /// No build installed at all.
    NoBuild,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::MissingFeatures { level, missing } => write!(
                f,
                "this CPU lacks {} (needed by the {} build, the lowest in this image); \
                 use an image built with the x86-64 target too (build argument CPU_TARGETS=\"x86-64-v3 x86-64\")",
                missing.join(", "),
                level.name()
            ),
            Refusal::NoBuild => write!(f, "no build of the program is installed"),
        }
    }
}

/// The highest of the `installed` levels whose features `has` all; else why none runs.
pub fn choose(installed: &[Level], has: impl Fn(&str) -> bool) -> Result<Level, Refusal> {
    let mut levels = installed.to_vec();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    if let Some(level) = levels
        .iter()
        .copied()
        .find(|l| l.features().iter().all(|f| has(f)))
    {
        return Ok(level);
    }
    let lowest = *levels.last().ok_or(Refusal::NoBuild)?;
    Err(Refusal::MissingFeatures {
        level: lowest,
        missing: lowest
            .features()
            .iter()
            .copied()
            .filter(|f| !has(f))
            .collect(),
    })
}

/// Every feature some level needs: [`detected`] knows each.
pub const KNOWN_FEATURES: &[&str] = &[
    "cmpxchg16b",
    "popcnt",
    "sse3",
    "sse4.1",
    "sse4.2",
    "ssse3",
    "avx",
    "avx2",
    "bmi1",
    "bmi2",
    "f16c",
    "fma",
    "lzcnt",
    "movbe",
    "xsave",
];

/// Whether this CPU has `feature` (false for names it does not know, and off x86-64).
pub fn detected(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "cmpxchg16b" => std::arch::is_x86_feature_detected!("cmpxchg16b"),
            "popcnt" => std::arch::is_x86_feature_detected!("popcnt"),
            "sse3" => std::arch::is_x86_feature_detected!("sse3"),
            "sse4.1" => std::arch::is_x86_feature_detected!("sse4.1"),
            "sse4.2" => std::arch::is_x86_feature_detected!("sse4.2"),
            "ssse3" => std::arch::is_x86_feature_detected!("ssse3"),
            "avx" => std::arch::is_x86_feature_detected!("avx"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "bmi1" => std::arch::is_x86_feature_detected!("bmi1"),
            "bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
            "f16c" => std::arch::is_x86_feature_detected!("f16c"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            "lzcnt" => std::arch::is_x86_feature_detected!("lzcnt"),
            "movbe" => std::arch::is_x86_feature_detected!("movbe"),
            "xsave" => std::arch::is_x86_feature_detected!("xsave"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

/// The build of `program` at `level` in `dir`.
pub fn build_path(dir: &Path, program: &str, level: Level) -> PathBuf {
    dir.join(format!("{program}.{}", level.name()))
}

/// The levels of `program` installed in `dir`.
pub fn installed(dir: &Path, program: &str) -> Vec<Level> {
    Level::ALL
        .into_iter()
        .filter(|l| build_path(dir, program, *l).is_file())
        .collect()
}

/// The program a launcher invoked as `argv0` stands for: its file name.
pub fn program_name(argv0: &str) -> Option<&str> {
    Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(features: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |f| features.contains(&f)
    }

    const HASWELL: &[&str] = KNOWN_FEATURES;
    /// A Nehalem-class CPU (or a VM that hides AVX): v2, not v3.
    const NEHALEM: &[&str] = &["cmpxchg16b", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"];

    #[test]
    fn v3_cpu_runs_the_v3_build() {
        assert_eq!(choose(&[Level::V1, Level::V3], cpu(HASWELL)), Ok(Level::V3));
    }

    #[test]
    fn cpu_without_avx2_runs_the_baseline_build() {
        assert_eq!(choose(&[Level::V3, Level::V1], cpu(NEHALEM)), Ok(Level::V1));
        assert_eq!(choose(&[Level::V3, Level::V1], cpu(&[])), Ok(Level::V1));
    }

    #[test]
    fn the_highest_runnable_level_wins() {
        let all = [Level::V1, Level::V2, Level::V3];
        assert_eq!(choose(&all, cpu(NEHALEM)), Ok(Level::V2));
        assert_eq!(choose(&all, cpu(HASWELL)), Ok(Level::V3));
    }

    #[test]
    fn only_a_v3_build_names_the_missing_features() {
        let refusal = choose(&[Level::V3], cpu(NEHALEM)).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::MissingFeatures {
                level: Level::V3,
                missing: vec![
                    "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"
                ],
            }
        );
        let line = refusal.to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(
            line.starts_with("this CPU lacks avx, avx2, bmi1, bmi2, f16c, fma"),
            "{line}"
        );
        assert!(line.contains("x86-64-v3 build"), "{line}");
    }

    #[test]
    fn one_missing_feature_is_enough_to_refuse() {
        let no_fma: Vec<&str> = HASWELL.iter().copied().filter(|f| *f != "fma").collect();
        let refusal = choose(&[Level::V3], |f| no_fma.contains(&f)).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::MissingFeatures {
                level: Level::V3,
                missing: vec!["fma"]
            }
        );
    }

    #[test]
    fn nothing_installed() {
        assert_eq!(choose(&[], cpu(HASWELL)), Err(Refusal::NoBuild));
    }

    #[test]
    fn levels_need_what_their_names_promise() {
        // v3 adds to v2, which adds to baseline.
        for f in Level::V2.features() {
            assert!(Level::V3.features().contains(f), "{f}");
        }
        for f in ["avx2", "fma", "bmi2"] {
            assert!(Level::V3.features().contains(&f), "{f}");
            assert!(!Level::V2.features().contains(&f), "{f}");
        }
        assert!(Level::V1.features().is_empty());
        for l in Level::ALL {
            assert_eq!(Level::from_name(l.name()), Some(l));
        }
        assert_eq!(Level::from_name("native"), None);
    }

    #[test]
    fn detection_knows_every_feature_a_level_needs() {
        for l in Level::ALL {
            for f in l.features() {
                assert!(KNOWN_FEATURES.contains(f), "{f}");
            }
        }
        // Every x86-64 CPU has what v1 needs: choosing on this machine always succeeds.
        #[cfg(target_arch = "x86_64")]
        {
            assert!(choose(&Level::ALL, detected).is_ok());
            // SSE3 and CMPXCHG16B are everywhere a CI runs; unknown names are never detected.
            assert!(detected("sse3"));
            assert!(!detected("not-a-feature"));
        }
    }

    #[test]
    fn program_is_the_file_name_of_argv0() {
        assert_eq!(
            program_name("/usr/local/bin/inference-server"),
            Some("inference-server")
        );
        assert_eq!(program_name("mooring-operator"), Some("mooring-operator"));
        assert_eq!(program_name(""), None);
        assert_eq!(
            build_path(Path::new(DEFAULT_DIR), "inference-server", Level::V3),
            Path::new("/usr/local/libexec/mooring/inference-server.x86-64-v3")
        );
    }
}
