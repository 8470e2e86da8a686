//! The committed CRD manifests must be what the Rust types generate, and the Helm chart must
//! ship the same files: otherwise `kubectl apply -f crds/` or `helm install` would install an
//! API the operator does not speak.

use std::path::Path;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

#[test]
fn committed_crds_equal_crdgen_output() {
    for (file, generated) in mooring_crds::crd_manifests() {
        let committed = read(&crate_dir().join(file));
        assert!(
            committed == generated,
            "crds/{file} differs from what the types generate: run `cargo run -p mooring-crds --bin crdgen` and commit"
        );
    }
}

#[test]
fn chart_crds_equal_committed_crds() {
    let chart_dir = crate_dir().join("../charts/mooring/crds");
    for (file, generated) in mooring_crds::crd_manifests() {
        let in_chart = read(&chart_dir.join(file));
        assert!(
            in_chart == generated,
            "charts/mooring/crds/{file} differs from crds/{file}: run `cargo run -p mooring-crds --bin crdgen charts/mooring/crds`"
        );
    }
}
