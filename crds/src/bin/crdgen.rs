//! Writes the CRD manifests generated from the Rust types: `crdgen [DIR]` (default: the
//! `crds/` directory of this crate), or `crdgen -` to print them all to stdout.
#![forbid(unsafe_code)]

use std::path::PathBuf;

fn main() {
    let arg = std::env::args().nth(1);
    let manifests = mooring_crds::crd_manifests();
    if arg.as_deref() == Some("-") {
        for (_, yaml) in &manifests {
            print!("---\n{yaml}");
        }
        return;
    }
    let dir = arg
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for (file, yaml) in manifests {
        let path = dir.join(file);
        if let Err(err) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            std::process::exit(1);
        }
        println!("wrote {}", path.display());
    }
}
