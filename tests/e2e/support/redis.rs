//! A real `redis-server` on a free loopback port, for the tests of state shared by replicas.
//! Debian's `redis-server` is what `.ci/run` installs; without it these tests fail and say how
//! to install it (they never skip).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts an empty Redis with no persistence (as the quota's store should run).
    pub fn start() -> Self {
        // A port the OS found free; another process may take it before redis-server binds it,
        // and then another port is tried.
        for _ in 0..5 {
            let port = {
                let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
                probe.local_addr().expect("addr").port()
            };
            let mut server = Self {
                child: None,
                port,
                dir: tempfile::tempdir().expect("tempdir"),
            };
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server found no free port in five tries");
    }

    /// Starts redis-server on this port: true once it answers there, false if another process
    /// holds the port.
    fn launch(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the tests of state shared through Redis \
                     need a real one; install it with `apt-get install redis-server` (Debian) \
                     and make sure `redis-server` is on PATH"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The server that answers must be this one, not one another test started on a port
            // it was also told was free.
            if let Some(pid) = self.answering_pid() {
                if pid == child.id() {
                    self.child = Some(child);
                    return true;
                }
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            if child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("redis-server on port {} did not answer", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of the Redis answering on this port, if one does.
    fn answering_pid(&self) -> Option<u32> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        (&stream).write_all(b"INFO server\r\n").ok()?;
        // A bulk string: `$<length>\r\n<text>\r\n`.
        let mut reply = BufReader::new(&stream);
        let mut header = String::new();
        reply.read_line(&mut header).ok()?;
        let length: usize = header.strip_prefix('$')?.trim().parse().ok()?;
        let mut text = vec![0; length];
        reply.read_exact(&mut text).ok()?;
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))?
            .trim()
            .parse()
            .ok()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP or SIGCONT: a Redis that holds its connections open and answers nothing (a hung
    /// or overloaded server, a network partition), then carries on.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("redis-server is running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {signal} redis-server");
    }

    /// SIGKILL: Redis dies with whatever it held.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again, empty, on the same port (a restart without persistence).
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "another process took port {} while redis-server was down",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
