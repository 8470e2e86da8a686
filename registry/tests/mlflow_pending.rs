//! A version MLflow has not finished registering (`PENDING_REGISTRATION`) is resolved but
//! never served. Open-source MLflow's REST API creates versions as `READY` directly, so this
//! test runs its own `mlflow server` (from the test venv, `MOORING_TEST_PYTHON`) on a sqlite
//! file it owns and puts one version back into `PENDING_REGISTRATION` in the database.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mooring_registry::mlflow::MlflowRegistry;
use mooring_registry::{ModelRef, Registry, RegistryConfig};

/// How long a cold `mlflow server` may take to answer /health.
const STARTUP_LIMIT: Duration = Duration::from_secs(120);

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    /// `mlflow server` forks uvicorn, a job runner and huey consumers (which ignore
    /// SIGTERM): stop the whole process group it leads, politely first, then for sure.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    std::env::var("MOORING_TEST_PYTHON")
        .expect("MOORING_TEST_PYTHON is not set: this test needs the test venv with mlflow; run `make test`")
}

async fn start_mlflow(dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("mlflow.log")).unwrap();
    let child = Command::new(python())
        .args([
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group, so Drop can stop every process it forks.
        .process_group(0)
        .spawn()
        .expect("start mlflow server from MOORING_TEST_PYTHON");
    let mut server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    let health = format!("{}/health", server.url);
    loop {
        if reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return server;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("mlflow.log")).unwrap_or_default();
            panic!("mlflow server exited with {status}:\n{log}");
        }
        assert!(
            started.elapsed() < STARTUP_LIMIT,
            "mlflow server did not answer /health within {STARTUP_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn pending_registration_is_resolved_but_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_mlflow(dir.path()).await;
    let reg = MlflowRegistry::new(&RegistryConfig::new(&server.url)).unwrap();
    let iris = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/iris-classifier/1");
    reg.register("iris-pending", &iris).await.unwrap();
    reg.set_alias("iris-pending", "production", "1")
        .await
        .unwrap();

    let sql = "import sqlite3, sys\n\
               c = sqlite3.connect(sys.argv[1])\n\
               n = c.execute(\"update model_versions set status='PENDING_REGISTRATION' where name='iris-pending'\").rowcount\n\
               c.commit()\n\
               assert n == 1, n";
    let out = Command::new(python())
        .args(["-c", sql])
        .arg(dir.path().join("mlflow.db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let v = reg
        .resolve(&ModelRef::alias("iris-pending", "production"))
        .await
        .unwrap();
    assert_eq!(v.status, "PENDING_REGISTRATION");
    assert!(!v.is_ready());
    let cache = tempfile::tempdir().unwrap();
    let err = reg.fetch(&v, cache.path()).await.unwrap_err();
    assert_eq!(err.reason(), "VersionNotReady");
    assert_eq!(
        err.to_string(),
        "model \"iris-pending\" version 1 is not ready to serve (status PENDING_REGISTRATION)"
    );
    assert!(!cache.path().join("iris-pending").exists());
    drop(server);
}
