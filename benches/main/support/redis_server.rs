//! A `redis-server` of the bench's own on a free loopback port, persistence off, killed (and
//! its directory removed) on drop. Mirrors the throttle crate's test support.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a fresh server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub(crate) struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl RedisServer {
    /// Starts a server, or says why it cannot (`redis-server` missing, never ready).
    pub(crate) fn start() -> Result<RedisServer, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let dir = std::env::temp_dir().join(format!("towline-bench-redis-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run `redis-server` (scripts/ensure-deps installs it): {e}")
            })?;
        let server = RedisServer { port, dir, child };
        let client = server.client();
        let deadline = std::time::SystemTime::now() + READY_WITHIN;
        loop {
            let pong = client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return Ok(server);
            }
            if std::time::SystemTime::now() > deadline {
                return Err(format!("redis-server on port {port} never answered PING"));
            }
            // Not on a runtime thread: the server is started before the bench's runtime runs.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("a redis URL")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
