//! Real proxy servers from Debian, started on free loopback ports.
//!
//! Each one binds its outgoing connections to its own 127.0.0.x ("egress"), so the
//! target server can tell which proxy carried a connection, and that it was not
//! a direct one (those come from 127.0.0.1).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::require_binary;

/// A unique loopback address for one proxy's outgoing connections.
pub fn next_egress_ip() -> IpAddr {
    static NEXT: AtomicU8 = AtomicU8::new(10);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 250, "out of egress addresses");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A port that was free a moment ago, for servers that cannot bind port 0 and say so.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running third-party proxy; killed on drop.
pub struct RealProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The source address of the connections it makes.
    pub egress: IpAddr,
    child: Child,
    log: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl RealProxy {
    /// What the proxy wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it now (connections to it are refused afterwards).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) it: stopped, the kernel still
    /// accepts its connections, and nothing answers them.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts it again on the same port, with the same arguments, after [`kill`].
    ///
    /// [`kill`]: RealProxy::kill
    pub async fn restart(&mut self) {
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("restart");
        crate::wait::until(
            "the restarted proxy to listen",
            crate::wait::DEFAULT_DEADLINE,
            || std::net::TcpStream::connect(self.addr).ok().map(drop),
        )
        .await;
    }
}

/// Starts `program` with the arguments `args(port, dir)` until one attempt listens.
/// A port taken between [`free_port`] and the server's bind costs a retry.
async fn start(
    name: &str,
    egress: IpAddr,
    args: impl Fn(u16, &Path) -> Vec<String>,
) -> Option<RealProxy> {
    let program = require_binary(name)?;
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("proxy.log");
        let out = std::fs::File::create(&log).expect("log file");
        let argv = args(port, dir.path());
        let mut child = Command::new(&program)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited: port taken or bad config; retry
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Some(RealProxy {
                    addr,
                    egress,
                    child,
                    log,
                    program,
                    args: argv,
                    _dir: dir,
                });
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill().await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "{name} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    panic!("{name} would not start after 5 attempts");
}

/// A configuration with one default http pool of `proxies` (SOCKS5), probes off,
/// and `extra` settings inside the pool (`, strategy: least_connections`).
pub fn pool_yaml(proxies: &[&RealProxy], extra: &str) -> String {
    let urls: Vec<String> = proxies
        .iter()
        .map(|p| format!("'socks5://{}'", p.addr))
        .collect();
    format!(
        "proxy: {{enabled: true, default: {{http: {{pool: [{}], health_check: {{enabled: false}}{extra}}}}}}}",
        urls.join(", ")
    )
}

/// microsocks (SOCKS5), optionally with user/password auth.
pub async fn microsocks(auth: Option<(&str, &str)>) -> Option<RealProxy> {
    let egress = next_egress_ip();
    let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
    start("microsocks", egress, move |port, _| {
        let mut a = vec![
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-b".into(),
            egress.to_string(),
        ];
        if let Some((u, p)) = &auth {
            a.extend(["-u".into(), u.clone(), "-P".into(), p.clone()]);
        }
        a
    })
    .await
}

/// tinyproxy (HTTP CONNECT) with Basic auth `user:password`.
pub async fn tinyproxy(user: &str, password: &str) -> Option<RealProxy> {
    let egress = next_egress_ip();
    let (user, password) = (user.to_owned(), password.to_owned());
    start("tinyproxy", egress, move |port, dir| {
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nBind {egress}\nTimeout 60\nMaxClients 100\n\
                 BasicAuth {user} {password}\nDisableViaHeader Yes\nLogLevel Connect\n"
            ),
        )
        .unwrap();
        vec!["-d".into(), "-c".into(), conf.display().to_string()]
    })
    .await
}

/// Dante (`danted`), speaking SOCKS4 and SOCKS5 without auth.
pub async fn dante() -> Option<RealProxy> {
    let egress = next_egress_ip();
    start("danted", egress, move |port, dir| {
        let conf = dir.join("danted.conf");
        std::fs::write(
            &conf,
            format!(
                "logoutput: stderr\ninternal: 127.0.0.1 port = {port}\nexternal: {egress}\n\
                 socksmethod: none\nclientmethod: none\n\
                 user.privileged: root\nuser.unprivileged: nobody\n\
                 client pass {{\n from: 127.0.0.0/8 to: 0.0.0.0/0\n}}\n\
                 socks pass {{\n from: 127.0.0.0/8 to: 0.0.0.0/0\n command: connect\n protocol: tcp\n}}\n"
            ),
        )
        .unwrap();
        vec![
            "-f".into(),
            conf.display().to_string(),
            "-N".into(),
            "1".into(),
            "-p".into(),
            dir.join("danted.pid").display().to_string(),
        ]
    })
    .await
}
