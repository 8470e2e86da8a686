//! `mooring-launcher`, installed as `/usr/local/bin/<program>`: execs the build of `<program>`
//! this CPU can run (see the library), with the same arguments, or exits 1 with one line
//! naming the missing CPU features.
#![forbid(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use mooring_launcher::{
    DEFAULT_DIR, DIR_ENV, DISABLE_ENV, build_path, choose, detected, installed,
};

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let argv0_text = argv0.to_string_lossy().into_owned();
    let Some(program) = mooring_launcher::program_name(&argv0_text).map(str::to_owned) else {
        eprintln!("mooring-launcher: cannot tell the program from argv[0] {argv0_text:?}");
        return ExitCode::FAILURE;
    };
    let dir = std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    let disabled = std::env::var(DISABLE_ENV).unwrap_or_default();
    let disabled: Vec<&str> = disabled.split(',').map(str::trim).collect();
    let has = |f: &str| !disabled.contains(&f) && detected(f);
    let level = match choose(&installed(&dir, &program), has) {
        Ok(level) => level,
        Err(refusal) => {
            eprintln!("{program}: {refusal} (looked in {})", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let path = build_path(&dir, &program, level);
    // exec only returns on failure.
    let err = Command::new(&path).arg0(&argv0).args(args).exec();
    eprintln!("{program}: cannot run {}: {err}", path.display());
    ExitCode::from(126)
}
