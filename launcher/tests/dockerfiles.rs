//! The Dockerfiles install the launcher the way it looks for the builds (no Docker engine here,
//! so this reads them and their build script, scripts/build-binaries.sh): the builds as
//! `<DEFAULT_DIR>/<program>.<level>` for each CPU target, the launcher itself built for baseline
//! x86-64 (a RUSTFLAGS that replaces config.toml's v3 flags) and checked for v3 instructions,
//! installed as the ENTRYPOINT.

use std::path::Path;

use mooring_launcher::{DEFAULT_DIR, Level};

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn contains(path: &str, text: &str, needle: &str) {
    assert!(text.contains(needle), "{path} lacks {needle:?}");
}

/// The script both Dockerfiles build with: each level's build named as the launcher looks for
/// it, the launcher itself baseline, verified, installed under the program's name.
#[test]
fn the_build_script_installs_each_level_where_the_launcher_looks() {
    let path = "scripts/build-binaries.sh";
    let text = read(path);
    let has = |needle: &str| contains(path, &text, needle);
    has("RUSTFLAGS=\"-C target-cpu=$cpu\" cargo build --release --locked -p \"$package\" \"$@\"");
    has("install -D \"$target_dir/$cpu/release/$package\" \"$out/libexec/mooring/$package.$cpu\"");
    assert_eq!(DEFAULT_DIR, "/usr/local/libexec/mooring");
    has("RUSTFLAGS=\"-C target-cpu=x86-64\" cargo build --release --locked -p mooring-launcher");
    has("scripts/check-baseline-binary.sh \"$target_dir/x86-64/release/mooring-launcher\"");
    has("install -D \"$target_dir/x86-64/release/mooring-launcher\" \"$out/bin/$package\"");
    for level in ["x86-64", "x86-64-v2", "x86-64-v3"] {
        assert!(Level::from_name(level).is_some(), "{path} accepts {level}");
        has(level);
    }
}

/// `path` builds `program` through the script in each of `stages` (with its cargo
/// arguments) and installs the result where the launcher and the ENTRYPOINT expect it.
fn check(path: &str, program: &str, default_targets: &str, stages: &[(&str, &str)]) {
    let text = read(path);
    let has = |needle: &str| contains(path, &text, needle);
    has(&format!("ARG CPU_TARGETS=\"{default_targets}\""));
    for level in default_targets.split(' ') {
        assert!(
            Level::from_name(level).is_some(),
            "{path}: unknown level {level}"
        );
    }
    has("ARG AARCH64_TARGET_CPU=generic");
    has("ENV CPU_TARGETS=${CPU_TARGETS} AARCH64_TARGET_CPU=${AARCH64_TARGET_CPU}");
    for (stage, cargo_args) in stages {
        has(&format!("AS {stage}\n"));
        has(&format!(
            "scripts/build-binaries.sh {program} /out{cargo_args}\n"
        ));
        has(&format!(
            "COPY --from={stage} /out/libexec/ /usr/local/libexec/"
        ));
        has(&format!(
            "COPY --from={stage} /out/bin/{program} /usr/local/bin/{program}"
        ));
    }
    has(&format!("ENTRYPOINT [\"/usr/local/bin/{program}\""));
}

#[test]
fn inference_server_image_holds_v3_and_baseline_behind_the_launcher() {
    check(
        "inference-server/Dockerfile",
        "inference-server",
        "x86-64-v3 x86-64",
        &[
            ("build-models", " --no-default-features"),
            ("build-chat", ""),
        ],
    );
}

/// A plain `docker build` (no --target) builds the last stage: the image without chat, which
/// the operator runs for ModelDeployments.
#[test]
fn the_default_inference_server_image_is_the_one_without_chat() {
    let text = read("inference-server/Dockerfile");
    let last = text.lines().rfind(|l| l.starts_with("FROM ")).unwrap();
    assert_eq!(last, "FROM runtime AS models");
}

#[test]
fn operator_image_is_baseline_behind_the_launcher() {
    check(
        "operator/Dockerfile",
        "mooring-operator",
        "x86-64",
        &[("build", "")],
    );
}
