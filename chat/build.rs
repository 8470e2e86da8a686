//! Compiles proto/chat.proto with a protoc shipped inside a crates.io package, so a fresh
//! machine needs no system protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Handing the path to prost's config avoids `std::env::set_var`, which edition 2024 marks unsafe.
    let proto = "../proto/chat.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(config, &[proto], &["../proto"])?;
    Ok(())
}
