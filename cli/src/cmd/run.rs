//! `proxypool run -- CMD`, the way proxychains and torsocks are used: CMD starts
//! with every proxy variable its clients read pointed at a gateway (a running one,
//! or one started for it and stopped after it); signals go on to it, and its exit
//! code is ours.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use proxypool::gateway::{Gateway, Settings};
use proxypool::{Balancer, Dialer};

/// The variables set for the child, and which form of the gateway's address each
/// takes. requests, aiohttp (with `trust_env`), httpx, curl and ccxt read the
/// `http(s)_proxy` pair; websockets ≥ 15 reads `wss_proxy`, `ws_proxy`, then
/// `socks_proxy` and `https_proxy`; curl and others read `all_proxy`.
const VARIABLES: [(&str, Form); 7] = [
    ("http_proxy", Form::Http),
    ("https_proxy", Form::Http),
    ("all_proxy", Form::Socks),
    ("wss_proxy", Form::Http),
    ("ws_proxy", Form::Http),
    ("socks_proxy", Form::Socks),
    ("ftp_proxy", Form::Http),
];

#[derive(Clone, Copy)]
enum Form {
    Http,
    Socks,
}

/// Runs `command` against `gateway`, or against a gateway over `config` started on
/// a free loopback port for it.
pub fn run(
    gateway: Option<SocketAddr>,
    config: Option<PathBuf>,
    command: Vec<OsString>,
) -> anyhow::Result<ExitCode> {
    let Some((program, args)) = command.split_first() else {
        anyhow::bail!("proxypool run: no command given (proxypool run -- CMD ARGS…)");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async {
        let (addr, _gateway) = match gateway {
            Some(addr) => (addr, None),
            None => {
                let config = match super::super::load(config) {
                    Ok(c) => c,
                    Err(code) => return Ok(code),
                };
                let started = start_gateway(config).await?;
                (started.0, Some(started.1))
            }
        };
        let mut child = std::process::Command::new(program);
        child.args(args);
        for (name, form) in VARIABLES {
            let value = match form {
                Form::Http => format!("http://{addr}"),
                Form::Socks => format!("socks5h://{addr}"),
            };
            child
                .env(name, &value)
                .env(name.to_ascii_uppercase(), &value);
        }
        let child = child
            .spawn()
            .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
        let status = wait_forwarding_signals(child).await?;
        Ok(exit_code(status))
    })
}

/// A gateway over `config` on 127.0.0.1:0, serving until the returned sender drops.
async fn start_gateway(
    config: proxypool::config::Config,
) -> anyhow::Result<(SocketAddr, tokio::sync::watch::Sender<bool>)> {
    let settings = Settings::from(config.gateway());
    let balancer = std::sync::Arc::new(Balancer::try_new(config, Dialer::new())?);
    balancer.start(&tokio::runtime::Handle::current());
    Ok(Gateway::builder(balancer)
        .settings(settings)
        .listen(proxypool::config::Listen::loopback())
        .spawn()
        .await?)
}

/// Waits for the child, handing it the SIGTERM and SIGHUP we get. SIGINT is only
/// waited through: a terminal's Ctrl-C reaches the child itself (it is in our
/// process group), and a second one would cut its clean-up short.
async fn wait_forwarding_signals(
    mut child: std::process::Child,
) -> anyhow::Result<std::process::ExitStatus> {
    use nix::sys::signal::{Signal, kill};
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut waited = tokio::task::spawn_blocking(move || child.wait());
    loop {
        let sig = tokio::select! {
            status = &mut waited => return Ok(status??),
            _ = int.recv() => continue,
            _ = term.recv() => Signal::SIGTERM,
            _ = hup.recv() => Signal::SIGHUP,
        };
        let _ = kill(pid, sig);
    }
}

/// The child's code, or 128 + the signal that ended it, as a shell reports it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(code.clamp(0, 255) as u8)
}
