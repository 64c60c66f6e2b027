//! The real `cams-flows` binary as a child process: its log lines as they come, and everything it
//! wrote.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// The `cams-flows` binary of this build, without the settings of the test runner's environment
/// (`ALIBABA_CLOUD_*`, `CAMS_FLOWS_*`, `RUST_LOG`), so that it runs with its defaults. The
/// credential chain's ECS step is off (`ALIBABA_CLOUD_ECS_METADATA_DISABLED`), so that no test
/// reaches for the metadata service's real address; a test about it points it at loopback.
pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cams-flows"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ALIBABA_CLOUD_")
            || key.starts_with("CAMS_FLOWS_")
            || key.starts_with("OTEL_")
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    // The default log level, whatever the test runner's environment says.
    cmd.env_remove("RUST_LOG");
    cmd
}

/// `cams-flows serve --sandbox` on a free loopback port, logging JSON, with `extra` flags.
pub struct ServedSandbox {
    pub running: Running,
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// The in-process simulated CAMS's base URL, without the trailing slash.
    pub sandbox: String,
}

pub fn serve_sandbox(extra: &[&str]) -> ServedSandbox {
    let running = Running::start(
        binary()
            .args([
                "serve",
                "--sandbox",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(extra),
    );
    // The simulated CAMS says where it is before the gateway listens.
    let sandbox = running.wait_for("simulated CAMS started")["endpoint"]
        .as_str()
        .expect("endpoint")
        .trim_end_matches('/')
        .to_owned();
    let addr = running.wait_for("\"listening\"")["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("address");
    ServedSandbox {
        running,
        addr,
        sandbox,
    }
}

/// A child process whose output is read as it comes: its log lines (stdout) one by one through
/// [`wait_for`](Self::wait_for) and [`lines_until`](Self::lines_until), and all of its stdout and
/// stderr through [`output`](Self::output) (or, once it has exited, [`all_output`](Self::all_output)).
/// Killed on drop.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let mut readers = Vec::new();
        let streams = [
            (
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
                Some(tx),
            ),
            (Box::new(child.stderr.take().expect("stderr")), None),
        ];
        for (stream, log) in streams {
            let output = Arc::clone(&output);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    {
                        let mut all = output.lock().expect("lock");
                        all.push_str(&line);
                        all.push('\n');
                    }
                    if let Some(log) = &log {
                        // Nobody may be reading the lines (only the whole output); that is fine.
                        let _ = log.send(line);
                    }
                }
            }));
        }
        Self {
            child,
            lines,
            output,
            readers,
        }
    }

    /// Waits for the process to exit, at most `bound` (it is killed, and this panics, past it).
    pub fn exit_within(&mut self, bound: Duration) -> ExitStatus {
        let end = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                panic!("the process did not exit within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the process wrote, to the end: call once it has exited (its pipes then close,
    /// and the readers finish).
    pub fn all_output(&mut self) -> String {
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        self.output()
    }

    /// The next log line holding `needle`, as JSON.
    pub fn wait_for(&self, needle: &str) -> serde_json::Value {
        let line = self.lines_until(needle).pop().unwrap_or_default();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// The log lines up to and including the next one holding `needle`.
    pub fn lines_until(&self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return lines;
            }
        }
    }

    /// Everything the process wrote so far, stdout and stderr, a line at a time.
    pub fn output(&self) -> String {
        self.output.lock().expect("lock").clone()
    }

    /// Sends the signal `name` (`TERM`, `HUP`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
