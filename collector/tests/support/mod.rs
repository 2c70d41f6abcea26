//! Running the real `tenantscope` binary from an integration test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct Daemon {
    pub child: Child,
    pub http: String,
    pub api: String,
    /// Its log lines (JSON), as they come.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The binary under test: `TENANTSCOPE_BIN` (CI points it at the release build), else the one
/// cargo built beside this test.
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("TENANTSCOPE_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tenantscope").into())
}

/// Starts the daemon; with `config`, that YAML file.
pub fn start(data_dir: &Path, config: Option<&Path>) -> Daemon {
    start_on(data_dir, config, "127.0.0.1:0")
}

/// [`start`] with the OTLP/gRPC listener on `grpc`.
pub fn start_on(data_dir: &Path, config: Option<&Path>, grpc: &str) -> Daemon {
    let mut command = Command::new(binary());
    if let Some(config) = config {
        command.arg("run").arg("--config").arg(config);
    } else {
        command.arg("run");
    }
    let mut child = command
        .args(["--log-format", "json", "--data-dir"])
        .arg(data_dir)
        .args(["--otlp-grpc", grpc, "--otlp-http", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tenantscope");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = loop {
        let line = lines
            .next()
            .expect("tenantscope exited before it started")
            .unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["message"] == "tenantscope started" {
            break event;
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Daemon {
        child,
        http: started["otlp_http"].as_str().unwrap().to_owned(),
        api: started["api"].as_str().unwrap().to_owned(),
        log,
    }
}

/// Sends the signal `name` (`TERM`, `HUP`, ...) to the daemon.
pub fn signal(daemon: &Daemon, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// SIGTERM, then the exit status must be success.
pub fn stop_gracefully(mut daemon: Daemon) {
    signal(&daemon, "TERM");
    assert!(
        daemon.child.wait().unwrap().success(),
        "graceful stop failed"
    );
}

/// Copies a data directory (files only; the test's directories are small).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
