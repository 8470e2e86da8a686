//! What the inference-server integration tests share: the repository's paths, `serve` flags
//! parsed by the binary's own CLI, a server running in this process on two free ports of
//! 127.0.0.1, and polling to a deadline instead of sleeping.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use inference_server::config::{Cli, Command, ServeArgs};
use inference_server::infer::ServerState;
use inference_server::serve::{self, Extras, ServeError};

/// The longest a test waits for the servers to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The bundled local registry (`models/`), as a `--registry` value.
pub fn bundled_registry() -> String {
    repo().join("models").display().to_string()
}

/// `inference-server <args>`, parsed as the binary parses it.
pub fn parse(args: &[&str]) -> Command {
    let argv = std::iter::once("inference-server").chain(args.iter().copied());
    Cli::parse_from(argv).command
}

/// The flags of `inference-server serve <flags>`.
pub fn serve_args(flags: &[&str]) -> ServeArgs {
    let args: Vec<&str> = std::iter::once("serve")
        .chain(flags.iter().copied())
        .collect();
    match parse(&args) {
        Command::Serve(args) => args,
        _ => unreachable!("a serve command line"),
    }
}

/// `serve::run` on ports the kernel picked, until [`Running::stop`].
pub struct Running {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Binds 127.0.0.1 port 0 twice and serves `state` (and `extras`) there, as `serve` does.
    pub async fn start(state: Arc<ServerState>, extras: Extras) -> Running {
        let (http, grpc) = serve::bind("127.0.0.1", 0, 0).await.unwrap();
        let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve::run(state, http, grpc, extras, async move {
            let _ = stopped.await;
        }));
        Running {
            http: http_addr,
            grpc: grpc_addr,
            stop: Some(stop),
            task,
        }
    }

    /// Loads the models `args` names and serves them with no extras.
    pub async fn serve(args: &ServeArgs) -> Running {
        let state = serve::load_state(args)
            .await
            .expect("the models load (ORT_DYLIB_PATH set? run `scripts/setup.sh run`)");
        Running::start(Arc::new(state), Extras::default()).await
    }

    /// The shutdown signal (SIGTERM in the binary): the servers stop accepting and drain.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).expect("the servers are running");
        }
    }

    /// Signals shutdown (when not yet done) and waits for both servers to return cleanly.
    pub async fn stop(mut self) {
        self.signal_stop();
        tokio::time::timeout(STOP_TIMEOUT, self.task)
            .await
            .expect("servers stop")
            .expect("the server task does not panic")
            .expect("the servers stop cleanly");
    }
}

/// Polls `condition` every 10 ms until it holds; fails naming `what` once `within` passed.
pub async fn eventually(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `future` is still pending after `grace`: the way to say "keeps waiting" without a
/// sleep that races the thing being waited for.
pub async fn still_pending<F: Future + Unpin>(future: &mut F, grace: Duration) -> bool {
    tokio::time::timeout(grace, future).await.is_err()
}
