//! Compiles proto/inference.proto and proto/chat.proto with a protoc shipped inside a
//! crates.io package, so a fresh machine needs no system protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["inference.proto", "chat.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // Edition 2024 makes `set_var("PROTOC")` unsafe; hand the path to prost-build directly.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(config, &protos, &["."])?;
    Ok(())
}
