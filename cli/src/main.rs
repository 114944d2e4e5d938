//! The `proxypool` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use proxypool::Balancer;
use proxypool::config::{Config, ConfigError, Transport};
use proxypool::{Dialer, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Exit status for bad configuration (sysexits' EX_USAGE).
pub(crate) const EXIT_CONFIG: u8 = 64;

mod cmd;

/// Pools of upstream proxies for market-data feed handlers.
///
/// Configuration comes from the YAML `proxy:` block (--config), then
/// CRYPTOFEED_PROXY_* variables, which win.
#[derive(Parser, Debug)]
#[command(name = "proxypool", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work with strategy components.
    #[command(subcommand)]
    Strategy(StrategyCommand),
    /// Check a configuration and print the resolved route table.
    ///
    /// Prints every exchange × transport with its route (direct, proxy or pool;
    /// credentials redacted) and the source of the value (env, yaml, code or
    /// default). On failure prints every problem with its path and exits 64.
    ///
    /// With `--against ADDR` it then asks the gateway whose admin endpoint is at
    /// ADDR what a reload to this file would change (per route: added, removed,
    /// switched off or on, changed with members kept, added and removed), changing
    /// nothing. The gateway applies its own environment over the file, as a reload
    /// would. The admin token, if the gateway has one, comes from
    /// PROXYPOOL_ADMIN_TOKEN.
    Validate {
        /// YAML file with a `proxy:` block; without it, only the environment counts.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A running gateway's admin address (127.0.0.1:9090) to compare against.
        #[arg(long, value_name = "ADDR", requires = "config")]
        against: Option<std::net::SocketAddr>,
    },
    /// See the whole system work on nothing of your own, in about 30 seconds.
    ///
    /// Starts three upstream SOCKS5 proxies in this process (one flaky, one slow, one
    /// that stops partway and comes back), a local HTTP server and a WebSocket echo
    /// server, the real gateway over them, and HTTP and WebSocket clients. A view
    /// shows picks, tunnels, health and breakers per upstream, failovers and hedges,
    /// redrawn in place on a terminal (a line a second otherwise). Halfway the pool's
    /// strategy file is replaced, round_robin to least_connections, through the
    /// real file-swap path. Ends with a summary: requests made and failed,
    /// failovers, the time from the kill to the last pick of the dead upstream, and
    /// the swap's latency. Exits 1 if a request failed or the swap did not complete.
    Demo {
        /// How long to run, in seconds.
        #[arg(long, value_name = "SECONDS", default_value = "30")]
        duration: u64,
    },
    /// Probe every configured proxy now, all at once, and print which work.
    ///
    /// Each pool's members are probed with the pool's own health check (method,
    /// timeout, retries); a single proxy with a TCP connect within its timeout. Prints
    /// route, proxy (credentials redacted), method, result and latency. A progress
    /// bar runs on stderr when it is a terminal. Exits 0 when every route has a
    /// working proxy, 1 when some route has none, 64 for a bad configuration.
    Check {
        /// YAML file with a `proxy:` block; without it, only the environment counts.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print a JSON array of {route, proxy, method, ok, latency_ms, error} instead.
        #[arg(long)]
        json: bool,
    },
    /// Show a running gateway's upstreams: pool, upstream, health, breaker, active
    /// tunnels, picks, bans and median handshake, from its admin endpoint's /status.
    ///
    /// The admin token, if the gateway has one, comes from PROXYPOOL_ADMIN_TOKEN
    /// (/status itself does not need it).
    Status {
        /// The gateway's admin address.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
        admin: std::net::SocketAddr,
        /// Redraw every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    ///
    /// For bash: `proxypool completions bash > ~/.local/share/bash-completion/completions/proxypool`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run the gateway: a local SOCKS5, SOCKS4 and HTTP proxy in front of the pools.
    ///
    /// Each client's protocol is told from its first byte. The user name (SOCKS5 user,
    /// SOCKS4 user id, Proxy-Authorization user) names the exchange whose route to
    /// take; without one, the default route. Prints one line per bound listener.
    /// SIGINT or SIGTERM stops accepting and gives live tunnels the drain time; a
    /// second signal exits at once.
    Serve {
        /// YAML file with a `proxy:` block; without it, only the environment counts.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where to listen (repeatable), in place of `gateway.listen` (127.0.0.1:1080
        /// without either). Port 0 picks a port.
        #[arg(long, value_name = "ADDR")]
        listen: Vec<std::net::SocketAddr>,
        /// Seconds live tunnels may run on after a shutdown signal, in place of
        /// `gateway.drain_seconds` (30).
        #[arg(long, value_name = "SECONDS")]
        drain_seconds: Option<u64>,
        /// Where the admin endpoint listens (/metrics, /status, /healthz, /readyz),
        /// in place of `gateway.admin` (127.0.0.1:9090); loopback only.
        #[arg(long, value_name = "ADDR")]
        admin: Option<std::net::SocketAddr>,
    },
    /// Run CMD with every proxy variable its clients read pointed at a gateway,
    /// as proxychains and torsocks are used.
    ///
    /// Sets http_proxy, https_proxy, wss_proxy, ws_proxy and ftp_proxy to
    /// http://GATEWAY, and all_proxy and socks_proxy to socks5h://GATEWAY, each in
    /// lower and upper case. Without --gateway it starts one over the configuration
    /// on a free loopback port for CMD and stops it after. SIGTERM and SIGHUP go on to
    /// CMD; exits with CMD's code (128 + the signal that ended it).
    Run {
        /// A running gateway to point CMD at, in place of starting one.
        #[arg(long, value_name = "ADDR")]
        gateway: Option<std::net::SocketAddr>,
        /// YAML file with a `proxy:` block for the gateway started for CMD.
        #[arg(long, value_name = "FILE", conflicts_with = "gateway")]
        config: Option<PathBuf>,
        /// The command and its arguments, after `--`.
        #[arg(
            value_name = "CMD",
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true
        )]
        command: Vec<std::ffi::OsString>,
    },
    /// Pipe stdin and stdout to HOST:PORT through the resolved route, like nc.
    ///
    /// When stdin ends the upstream write side is closed; the command exits when the
    /// upstream closes. Which proxy carried the connection, and the handshake time,
    /// go to stderr.
    Connect {
        /// YAML file with a `proxy:` block; without it, only the environment counts.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Exchange whose route to use (case-insensitive); the default route without it.
        #[arg(long, value_name = "NAME")]
        exchange: Option<String>,
        /// Transport whose route to use: http (alias rest) or websocket (alias ws).
        #[arg(long, value_name = "http|websocket", default_value = "http")]
        transport: Transport,
        /// Destination, as host:port or [v6]:port.
        #[arg(value_name = "HOST:PORT")]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
enum StrategyCommand {
    /// Run the conformance suite on a strategy component, under production limits.
    ///
    /// Checks that it loads and imports only proxypool's WIT (no WASI); handles an
    /// empty set, one proxy and 10,000 proxies; never returns an ineligible or already
    /// tried id; stays within the deadline and memory cap; and reports the
    /// distribution of 100,000 picks over 10 proxies. Prints a table; exits 1 if any
    /// check fails.
    Check {
        /// The component (`.wasm`) to check.
        #[arg(value_name = "FILE.wasm")]
        file: PathBuf,
    },
    /// Write a new strategy crate, NAME/, ready to build into a component.
    ///
    /// It holds the WIT, a guest of about 20 lines with a native unit test, a
    /// rust-toolchain.toml that brings the wasm32 target, and a .cargo/config.toml
    /// that links a component, so that one command builds it:
    /// `cargo build --release --target wasm32-unknown-unknown`. NAME is snake_case, as
    /// a strategy's name is everywhere. Nothing existing is overwritten.
    New {
        /// The strategy's name (snake_case): the directory, package and file name.
        name: String,
        /// Where to create NAME/ (default: here).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

// A gateway allocates and frees per connection from several threads; glibc's malloc
// took about 6% of its CPU at 6,000 connections a second (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo redraws a view in place, and `run`'s child owns the terminal: an INFO
    // line per dial would tear the one and mix into the other.
    let default_filter = match cli.command {
        Command::Demo { .. } | Command::Run { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROXYPOOL_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let result = match cli.command {
        Command::Strategy(StrategyCommand::Check { file }) => strategy_check(&file),
        Command::Strategy(StrategyCommand::New { name, dir }) => cmd::scaffold::run(&name, &dir),
        Command::Validate { config, against } => validate(config, against),
        Command::Check { config, json } => match load(config) {
            Ok(c) => cmd::check::run(&c, json),
            Err(code) => Ok(code),
        },
        Command::Status { admin, watch } => cmd::status::run(admin, watch),
        Command::Demo { duration } => cmd::demo::run(Duration::from_secs(duration.max(3))),
        Command::Run {
            gateway,
            config,
            command,
        } => cmd::run::run(gateway, config, command),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "proxypool",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            listen,
            drain_seconds,
            admin,
        } => serve(
            config,
            listen,
            drain_seconds.map(Duration::from_secs),
            admin,
        ),
        Command::Connect {
            config,
            exchange,
            transport,
            target,
        } => connect(config, exchange, transport, target),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("proxypool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    match Config::load(path.as_deref()) {
        Ok(c) => {
            for w in c.warnings() {
                eprintln!("warning: {w}");
            }
            Ok(c)
        }
        Err(e @ ConfigError::Invalid { .. }) => {
            eprintln!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => {
            eprintln!("proxypool: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn validate(
    path: Option<PathBuf>,
    against: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let config = match load(path.clone()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    print!("{}", config.route_table());
    let (Some(admin), Some(path)) = (against, path) else {
        return Ok(ExitCode::SUCCESS);
    };
    let body = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let (status, text) = cmd::admin_request(admin, "POST", "/plan", &body)?;
    match status {
        200 => {
            println!("against {admin}: {}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        422 => {
            eprintln!(
                "the gateway at {admin} would reject it:\n{}",
                text.trim_end()
            );
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        _ => anyhow::bail!(
            "the gateway at {admin} answered {status}: {}",
            text.trim_end()
        ),
    }
}

fn connect(
    path: Option<PathBuf>,
    exchange: Option<String>,
    transport: Transport,
    target: Target,
) -> anyhow::Result<ExitCode> {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // Compiling strategies blocks: do it before the runtime starts.
    let balancer = Balancer::try_new(config, Dialer::new())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // Probes and breaker timers run for as long as the tunnel does.
    balancer.start(rt.handle());
    let result = rt.block_on(async move {
        let tunnel = balancer
            .connect(exchange.as_deref(), transport, &target)
            .await?;
        match tunnel.via() {
            Some(p) => eprintln!(
                "connected to {target} via {p} (handshake {:.1} ms)",
                ms(tunnel.handshake())
            ),
            None => eprintln!(
                "connected to {target} directly (route is direct; {:.1} ms)",
                ms(tunnel.handshake())
            ),
        }
        pipe(tunnel).await?;
        Ok(ExitCode::SUCCESS)
    });
    // A read of stdin may still be blocked in the pool; do not wait for it.
    rt.shutdown_background();
    result
}

fn serve(
    path: Option<PathBuf>,
    listen: Vec<std::net::SocketAddr>,
    drain: Option<Duration>,
    admin: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    use proxypool::gateway::{Gateway, Settings};
    let config = match load(path.clone()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let g = config.gateway().clone();
    let mut settings = Settings::from(&g);
    if let Some(d) = drain {
        settings.drain = d;
    }
    let drain = settings.drain;
    let balancer = std::sync::Arc::new(Balancer::try_new(config, Dialer::new())?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        // Before any line a supervisor waits for: SIGHUP's default would end the process.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot handle SIGHUP")?;
        balancer.start(&tokio::runtime::Handle::current());
        let mut builder = Gateway::builder(balancer)
            .configured(&g)
            .settings(settings)
            .reload_from(path);
        // Flags win over the file, and fix the listeners for the run.
        if !listen.is_empty() {
            builder = builder.listen_only(
                listen
                    .into_iter()
                    .map(proxypool::config::Listen::new)
                    .collect(),
            );
        }
        if let Some(admin) = admin {
            builder = builder.admin(admin);
        }
        let gateway = match builder.bind().await {
            Ok(g) => g,
            Err(e @ proxypool::gateway::GatewayError::Exposed { .. }) => {
                eprintln!("proxypool: {e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            Err(e) => return Err(e.into()),
        };
        for (addr, transport) in gateway.local_addrs() {
            eprintln!("listening on {addr} (transport {})", transport.as_str());
        }
        if let Some(admin) = gateway.admin_addr() {
            eprintln!("admin on {admin}");
        }
        if let Some(on_hup) = gateway.reloader() {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match on_hup.reload("SIGHUP").await {
                        Ok(report) => eprintln!("reload (SIGHUP): {report}"),
                        Err(why) => eprintln!("reload (SIGHUP) rejected: {why}"),
                    }
                }
            });
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("shutting down: draining live tunnels for up to {drain:?}");
            let _ = stop.send(true);
            shutdown_signal().await;
            eprintln!("second signal: exiting now");
            std::process::exit(0);
        });
        gateway.run(stopped).await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
}

fn strategy_check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    use proxypool::strategy::{Limits, StrategyEngine, check};
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let engine = StrategyEngine::try_new(Limits::default())?;
    let report = check::run(&engine, &bytes);
    let width = report.rows.iter().map(|r| r.name.len()).max().unwrap_or(5);
    println!("strategy check: {}", file.display());
    println!("{:width$}  RESULT  DETAIL", "CHECK");
    for r in &report.rows {
        let result = if r.passed { "pass" } else { "FAIL" };
        println!("{:width$}  {result:<6}  {}", r.name, r.detail);
    }
    if !report.distribution.is_empty() && report.distribution.iter().any(|&c| c > 0) {
        let total: u64 = report.distribution.iter().sum();
        println!("distribution:");
        for (id, c) in report.distribution.iter().enumerate() {
            let share = *c as f64 * 100.0 / total as f64;
            let bar = "#".repeat((share / 0.5).round() as usize);
            println!("  proxy {id:>2}  {c:>6}  {share:5.2}%  {bar}");
        }
    }
    if report.passed() {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some checks FAILED");
        Ok(ExitCode::FAILURE)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// stdin → upstream (half-close at EOF) while upstream → stdout; done when upstream closes.
async fn pipe(tunnel: proxypool::Tunnel) -> anyhow::Result<()> {
    let (mut up_r, mut up_w) = tokio::io::split(tunnel);
    let upload = async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            up_w.write_all(&buf[..n]).await?;
        }
        up_w.shutdown().await?;
        anyhow::Ok(())
    };
    let download = async move {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut up_r, &mut stdout).await?;
        stdout.flush().await?;
        anyhow::Ok(())
    };
    let upload = tokio::spawn(upload);
    let result = download.await;
    // The upstream closed: stop reading stdin whatever its state.
    upload.abort();
    result
}
