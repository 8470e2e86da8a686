//! The `mooring` command-line tool: what seed users did with `manage_models.py`, against
//! either registry backend. Promotion is `mooring alias set NAME production VERSION`.
#![forbid(unsafe_code)]

mod commands;
mod render;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mooring_registry::RegistryConfig;

pub use commands::run;

/// Manage models in a Mooring registry: list, inspect, compare, register, promote.
#[derive(Debug, Parser)]
#[command(name = "mooring", version)]
pub struct Cli {
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table, env = "MOORING_OUTPUT")]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

/// Where the registry is and how to reach it.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registry: an MLflow URL (http://host:5000) or a directory (models, file:///srv/models).
    #[arg(
        long,
        global = true,
        default_value = "models",
        env = "MOORING_REGISTRY"
    )]
    pub registry: String,
    /// Bearer token for MLflow (Databricks-style).
    #[arg(
        long,
        global = true,
        env = "MOORING_REGISTRY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Basic-auth user for MLflow.
    #[arg(long, global = true, env = "MOORING_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Basic-auth password for MLflow.
    #[arg(
        long,
        global = true,
        env = "MOORING_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Timeout of one registry call, in seconds.
    #[arg(
        long,
        global = true,
        default_value_t = 30,
        env = "MOORING_REGISTRY_TIMEOUT_SECS"
    )]
    pub timeout_secs: u64,
    /// Retries of a registry call after its first attempt, on connection errors, 429 and 5xx
    /// (the server's and the operator's policy too).
    #[arg(
        long,
        global = true,
        default_value_t = mooring_registry::DEFAULT_MAX_RETRIES,
        env = "MOORING_REGISTRY_RETRIES"
    )]
    pub retries: u32,
    /// Keep fetched artifacts here (show/compare read signatures from them); a temporary
    /// directory, removed on exit, when not given.
    #[arg(long, global = true, env = "MOORING_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn config(&self) -> RegistryConfig {
        let mut c = RegistryConfig::new(&self.registry);
        c.token = self.token.clone();
        c.username = self.username.clone();
        c.password = self.password.clone();
        c.request_timeout = Duration::from_secs(self.timeout_secs.max(1));
        c.max_retries = self.retries;
        c
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Registered models and their versions.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Aliases: promotion (set) and demotion (delete).
    #[command(subcommand)]
    Alias(AliasCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every model with its versions, status and aliases.
    List,
    /// One model's versions, or one version in detail (lineage, tags, metrics, signature).
    Show {
        name: String,
        /// A version number or an alias.
        #[arg(long)]
        version: Option<String>,
    },
    /// Two versions side by side: metrics, parameters, signature, digest.
    Compare {
        name: String,
        v1: String,
        v2: String,
    },
    /// Upload a model directory (model.onnx, signature.json, optional reference.csv and
    /// version.json) as the next version of NAME, creating the model if needed.
    Register {
        name: String,
        #[arg(long = "from", value_name = "DIR")]
        from: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Point ALIAS at VERSION (promotion): servers following NAME@ALIAS move to it.
    Set {
        name: String,
        alias: String,
        version: String,
    },
    /// Remove ALIAS (demotion).
    Delete { name: String, alias: String },
}

/// Errors of the CLI itself; registry errors pass through with their own message.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Registry(#[from] mooring_registry::Error),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn retries_follow_the_registrys_policy() {
        let cli = Cli::try_parse_from(["mooring", "models", "list"]).unwrap();
        assert_eq!(
            cli.registry.config().max_retries,
            RegistryConfig::new("models").max_retries,
            "the CLI gives up after as many attempts as the server"
        );
    }

    #[test]
    fn parses_promotion() {
        let cli = Cli::try_parse_from([
            "mooring",
            "--registry",
            "http://x:5000",
            "alias",
            "set",
            "iris",
            "production",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.registry.registry, "http://x:5000");
        assert!(
            matches!(cli.command, Command::Alias(AliasCommand::Set { ref version, .. }) if version == "2")
        );
    }
}
