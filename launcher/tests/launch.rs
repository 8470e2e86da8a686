//! The launcher binary end to end: it execs the right build with the same arguments, falls back to baseline when features are absent, and refuses in one line when only
//! a v3 build is installed. The "builds" are shell scripts that say who they are.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn build(dir: &Path, name: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\necho \"{name} $*\"\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn launch(dir: &Path, disable: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mooring-launcher"))
        .arg0("/usr/local/bin/inference-server")
        .args(["serve", "--model", "iris@production"])
        .env("MOORING_LAUNCHER_DIR", dir)
        .env("MOORING_LAUNCHER_DISABLE", disable)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_cpu_without_avx2_fma_bmi2_runs_the_baseline_build() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "inference-server.x86-64-v3");
    build(dir.path(), "inference-server.x86-64");
    let out = stdout(&launch(dir.path(), "avx2,fma,bmi2"));
    assert_eq!(out, "inference-server.x86-64 serve --model iris@production");
}

#[test]
fn a_v3_cpu_runs_the_v3_build() {
    if !["avx2", "fma", "bmi2", "avx", "movbe"]
        .iter()
        .all(|f| mooring_launcher::detected(f))
    {
        eprintln!("this CPU is not x86-64-v3: nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "inference-server.x86-64-v3");
    build(dir.path(), "inference-server.x86-64");
    assert!(stdout(&launch(dir.path(), "")).starts_with("inference-server.x86-64-v3 "));
}

#[test]
fn only_a_v3_build_on_an_older_cpu_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "inference-server.x86-64-v3");
    let out = launch(dir.path(), "avx2,fma");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "inference-server: this CPU lacks avx2, fma (needed by the x86-64-v3 build"
        ),
        "{err}"
    );
}

#[test]
fn no_build_installed_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = launch(dir.path(), "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no build of the program is installed"),
        "{err}"
    );
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}
