//! The Dockerfiles install the launcher the way it looks for the builds (no Docker engine here,
//! so this reads them): the builds as `<DEFAULT_DIR>/<program>.<level>` for each CPU target,
//! the launcher itself built for baseline x86-64 (a RUSTFLAGS that replaces config.toml's v3
//! flags) and checked for v3 instructions, installed as the ENTRYPOINT.

use std::path::Path;

use mooring_launcher::{DEFAULT_DIR, Level};

fn dockerfile(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn check(path: &str, program: &str, default_targets: &str) {
    let text = dockerfile(path);
    let has = |needle: &str| {
        assert!(text.contains(needle), "{path} lacks {needle:?}");
    };
    has(&format!("ARG CPU_TARGETS=\"{default_targets}\""));
    for level in default_targets.split(' ') {
        assert!(
            Level::from_name(level).is_some(),
            "{path}: unknown level {level}"
        );
    }
    has("ARG AARCH64_TARGET_CPU=generic");
    // Each level's build, named as the launcher looks for it.
    has(&format!(
        "RUSTFLAGS=\"-C target-cpu=$cpu\" cargo build --release --locked -p {program}"
    ));
    has(&format!(
        "install -D \"target/$cpu/release/{program}\" \"/out/libexec/mooring/{program}.$cpu\""
    ));
    assert_eq!(DEFAULT_DIR, "/usr/local/libexec/mooring");
    has("COPY --from=build /out/libexec/ /usr/local/libexec/");
    // The launcher: baseline, verified, installed under the program's name.
    has("RUSTFLAGS=\"-C target-cpu=x86-64\" cargo build --release --locked -p mooring-launcher");
    has("scripts/check-baseline-binary.sh target/x86-64/release/mooring-launcher");
    has(&format!(
        "install -D target/x86-64/release/mooring-launcher /out/bin/{program}"
    ));
    has(&format!(
        "COPY --from=build /out/bin/{program} /usr/local/bin/{program}"
    ));
    has(&format!("ENTRYPOINT [\"/usr/local/bin/{program}\""));
}

#[test]
fn inference_server_image_holds_v3_and_baseline_behind_the_launcher() {
    check(
        "inference-server/Dockerfile",
        "inference-server",
        "x86-64-v3 x86-64",
    );
}

#[test]
fn operator_image_is_baseline_behind_the_launcher() {
    check("operator/Dockerfile", "mooring-operator", "x86-64");
}
