//! Command line and environment of the operator process.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for clusters).
    Json,
    /// Human-readable (for a terminal).
    Pretty,
}

/// The Mooring operator: keeps ModelDeployments moored to their registry aliases.
#[derive(Clone, Debug, Parser)]
#[command(name = "mooring-operator", version, about)]
pub struct Cli {
    /// Inference-server image for ModelDeployments and drift Jobs that do not name one: the
    /// build without chat (`inference-server/Dockerfile`, target `models`).
    #[arg(
        long,
        env = "MOORING_DEFAULT_IMAGE",
        default_value = "mooring/inference-server:0.1.0"
    )]
    pub default_image: String,

    /// Inference-server image for ChatServices that do not name one: the build with chat
    /// (`inference-server/Dockerfile`, target `chat`).
    #[arg(
        long,
        env = "MOORING_DEFAULT_CHAT_IMAGE",
        default_value = "mooring/inference-server-chat:0.1.0"
    )]
    pub default_chat_image: String,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "MOORING_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Elect a leader through a Lease, so that of several replicas only one reconciles.
    #[arg(long, env = "MOORING_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, env = "MOORING_LEASE_NAME", default_value = "mooring-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// This replica's identity in the Lease (default: the pod name, from POD_NAME).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Seconds a Lease stays valid without renewal; a standby takes over after that.
    #[arg(long, env = "MOORING_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration_seconds: u64,

    /// Address of the metrics and probe server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "MOORING_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "MOORING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,mooring_operator=debug`).
    #[arg(long, env = "MOORING_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Cli {
    /// This replica's identity: `--identity`, else the host name, else a fixed name.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "mooring-operator".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["mooring-operator"]).unwrap();
        assert!(cli.leader_election);
        assert_eq!(cli.metrics_addr.port(), 8080);
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from([
            "mooring-operator",
            "--leader-election",
            "false",
            "--namespace",
            "ml",
            "--log-format",
            "pretty",
        ])
        .unwrap();
        assert!(!cli.leader_election);
        assert_eq!(cli.namespace.as_deref(), Some("ml"));
        let err =
            Cli::try_parse_from(["mooring-operator", "--lease-duration-seconds", "1"]).unwrap_err();
        assert!(err.to_string().contains("lease-duration-seconds"), "{err}");
    }
}
