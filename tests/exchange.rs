//! Stand-ins for an exchange's hosts, for real clients (cryptofeed, ccxt) that must
//! think they talk to Binance.
//!
//! The clients dial `api.binance.com:443` and `stream.binance.com:9443` by name, so a
//! test runs itself again inside a network and mount namespace of its own
//! ([`rerun_inside`]): there [`World::enter`] brings loopback up, bind-mounts an
//! `/etc/hosts` that sends the exchange's names to [`STAND_IN_IP`], and a CA of the
//! test's own over the system's and certifi's trust stores. Nothing outside the
//! namespace is touched, and nothing inside can reach a real exchange.
//!
//! The stand-in records each connection's source address and each request, so a test
//! can tell that none came direct: proxies bind their own 127.0.0.x (see
//! [`crate::servers`]); a direct connection comes from 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;

/// Set in the environment of a test run inside its namespace.
pub const INSIDE_ENV: &str = "PROXYPOOL_TEST_EXCHANGE_WORLD";

/// Where the exchange's names point inside the namespace.
pub const STAND_IN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The names the stand-in answers for (its certificate's names too): Binance spot
/// REST and streams, and the futures hosts ccxt loads markets from.
pub const HOSTS: &[&str] = &[
    "api.binance.com",
    "stream.binance.com",
    "fapi.binance.com",
    "dapi.binance.com",
];

/// Whether this run is the one inside the namespace. Outside, runs the test `name`
/// (its full path, as `--exact` takes it) again inside `unshare --net --mount`,
/// asserts that it ran and passed, and returns `false`; the caller then returns.
/// Needs root and util-linux's `unshare`: skipped with a notice without them, a
/// failure under CI.
pub fn rerun_inside(name: &str) -> bool {
    if std::env::var_os(INSIDE_ENV).is_some() {
        return true;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let Some(unshare) = crate::require_binary("unshare") else {
        return false;
    };
    if !root {
        assert!(!crate::in_ci(), "{name} needs root for its namespace");
        eprintln!("SKIP: {name} needs root for its namespace");
        return false;
    }
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(unshare)
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE_ENV, "1")
        .output()
        .expect("run the test inside its namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "inside the namespace:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "the inner run ran: {stdout}");
    false
}

/// The namespace's set-up and its stand-in exchange.
pub struct World {
    /// The stand-in for [`HOSTS`].
    pub exchange: StandIn,
    /// The CA the clients trust, in PEM.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    /// Sets the namespace up (call it only inside one: see [`rerun_inside`]) and
    /// starts the stand-in. `python` is the interpreter whose certifi bundle is
    /// replaced by the test's CA.
    pub async fn enter(python: &Path) -> World {
        assert!(
            std::env::var_os(INSIDE_ENV).is_some(),
            "World::enter outside its namespace would change the machine's files"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        run(&["ip", "link", "set", "lo", "up"]);
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n{STAND_IN_IP} {}\n", HOSTS.join(" ")),
        )
        .unwrap();
        bind_mount(&hosts, Path::new("/etc/hosts"));

        let (ca_pem, acceptor) = certificates();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        let certifi = std::process::Command::new(python)
            .args(["-c", "import certifi; print(certifi.where())"])
            .output()
            .expect("python");
        let certifi = String::from_utf8_lossy(&certifi.stdout).trim().to_string();
        for store in [certifi.as_str(), "/etc/ssl/certs/ca-certificates.crt"] {
            if !store.is_empty() && Path::new(store).is_file() {
                bind_mount(&ca_file, Path::new(store));
            }
        }
        let exchange = StandIn::start(acceptor).await;
        World {
            exchange,
            ca_file,
            _dir: dir,
        }
    }

    /// Variables that point a client's TLS at the test's CA, for libraries that
    /// read them rather than the stores bind-mounted over.
    pub fn tls_env(&self) -> [(&'static str, &Path); 2] {
        [
            ("SSL_CERT_FILE", self.ca_file.as_path()),
            ("REQUESTS_CA_BUNDLE", self.ca_file.as_path()),
        ]
    }
}

fn run(cmd: &[&str]) {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bind_mount(file: &Path, over: &Path) {
    run(&[
        "mount",
        "--bind",
        file.to_str().unwrap(),
        over.to_str().unwrap(),
    ]);
}

/// A fresh CA (PEM) and an acceptor whose certificate it signed, for [`HOSTS`].
fn certificates() -> (String, TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "proxypool test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(HOSTS.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, HOSTS[0]);
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();

    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca.pem(), TlsAcceptor::from(Arc::new(config)))
}

/// One thing the stand-in saw: where from, and what (`GET host/path` or
/// `WS host/path`).
#[derive(Clone, Debug)]
pub struct Seen {
    /// The connection's source address.
    pub from: IpAddr,
    /// The request.
    pub what: String,
}

/// Binance's REST API on [`STAND_IN_IP`]:443 and its streams on :9443, over TLS,
/// with just enough of each answer for cryptofeed and ccxt to run: BTCUSDT's
/// exchange info, a ticker, a book snapshot, and streams of trades and book updates.
pub struct StandIn {
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl StandIn {
    async fn start(acceptor: TlsAcceptor) -> StandIn {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Fixed ports: the clients dial the exchange's own, and the namespace is this
        // test's alone, so nothing else can hold them.
        for (port, streams) in [(443, false), (9443, true)] {
            let listener = TcpListener::bind(SocketAddr::new(STAND_IN_IP, port))
                .await
                .expect("bind the stand-in");
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((s, peer)) = listener.accept().await {
                    let (acceptor, seen) = (acceptor.clone(), seen.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(s).await else {
                            return;
                        };
                        let record = Recorder {
                            from: peer.ip(),
                            seen,
                        };
                        if streams {
                            stream(tls, record).await;
                        } else {
                            rest(tls, record).await;
                        }
                    });
                }
            }));
        }
        StandIn { seen, tasks }
    }

    /// What it saw so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct Recorder {
    from: IpAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn record(&self, what: String) {
        self.seen.lock().unwrap().push(Seen {
            from: self.from,
            what,
        });
    }
}

/// HTTP/1.1 GETs on a kept-alive connection.
async fn rest<S>(tls: S, record: Recorder)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(tls);
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (mut host, mut body_len) = (String::new(), 0usize);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "host" => host = v.trim().to_string(),
                    "content-length" => body_len = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; body_len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        record.record(format!("{method} {host}{target}"));
        let (status, body) = answer(target);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if w.write_all(head.as_bytes()).await.is_err()
            || w.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

fn answer(target: &str) -> (&'static str, String) {
    let path = target.split('?').next().unwrap_or("");
    let body = match path {
        "/api/v3/exchangeInfo" => EXCHANGE_INFO.to_string(),
        "/fapi/v1/exchangeInfo" | "/dapi/v1/exchangeInfo" => {
            r#"{"timezone":"UTC","serverTime":1700000000000,"rateLimits":[],"symbols":[]}"#
                .to_string()
        }
        "/api/v3/depth" => {
            r#"{"lastUpdateId":100,"bids":[["50000.00","1.5"]],"asks":[["50001.00","2.5"]]}"#
                .to_string()
        }
        "/api/v3/ticker/24hr" => TICKER.to_string(),
        _ => {
            return (
                "404 Not Found",
                format!(r#"{{"code":-1,"msg":"the stand-in has no {path}"}}"#),
            );
        }
    };
    ("200 OK", body)
}

/// A websocket: `/stream?streams=a/b` (cryptofeed) gets the combined form for its
/// streams; `/ws` (ccxt) gets raw events for what it subscribes to.
// The handshake callback's error type is tungstenite's.
#[allow(clippy::result_large_err)]
async fn stream<S>(tls: S, record: Recorder)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let path = Arc::new(Mutex::new(String::new()));
    let host = Arc::new(Mutex::new(String::new()));
    let (p, h) = (path.clone(), host.clone());
    let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
        *p.lock().unwrap() = req.uri().to_string();
        if let Some(v) = req.headers().get("host").and_then(|v| v.to_str().ok()) {
            *h.lock().unwrap() = v.to_string();
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tls, callback).await else {
        return;
    };
    let path = path.lock().unwrap().clone();
    record.record(format!("WS {}{path}", host.lock().unwrap()));
    let combined = path.starts_with("/stream");
    let mut streams: Vec<String> = path
        .split_once("streams=")
        .map(|(_, s)| s.split('/').map(str::to_string).collect())
        .unwrap_or_default();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut update_id = 100u64;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { return };
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                if v["method"] == "SUBSCRIBE" {
                    if let Some(params) = v["params"].as_array() {
                        streams.extend(params.iter().filter_map(|p| p.as_str().map(str::to_string)));
                    }
                    let ok = serde_json::json!({"result": null, "id": v["id"]});
                    if ws.send(Message::text(ok.to_string())).await.is_err() {
                        return;
                    }
                }
            }
            _ = tick.tick() => {
                update_id += 1;
                for s in &streams {
                    let Some(event) = event(s, update_id) else { continue };
                    let msg = if combined {
                        serde_json::json!({"stream": s, "data": event})
                    } else {
                        event
                    };
                    if ws.send(Message::text(msg.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn event(stream: &str, id: u64) -> Option<serde_json::Value> {
    let (symbol, kind) = stream.split_once('@')?;
    let s = symbol.to_ascii_uppercase();
    let t = 1_700_000_000_000u64 + id;
    Some(match kind {
        "aggTrade" => serde_json::json!({
            "e": "aggTrade", "E": t, "s": s, "a": id, "p": "50000.50", "q": "0.010",
            "f": id, "l": id, "T": t, "m": true, "M": true
        }),
        "trade" => serde_json::json!({
            "e": "trade", "E": t, "s": s, "t": id, "p": "50000.50", "q": "0.010",
            "T": t, "m": false, "M": true
        }),
        k if k.starts_with("depth") => serde_json::json!({
            "e": "depthUpdate", "E": t, "s": s, "U": id, "u": id,
            "b": [["50000.00", "1.6"]], "a": [["50001.00", "2.4"]]
        }),
        _ => return None,
    })
}

const EXCHANGE_INFO: &str = r#"{"timezone":"UTC","serverTime":1700000000000,"rateLimits":[],"exchangeFilters":[],
"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,
"quoteAsset":"USDT","quotePrecision":8,"quoteAssetPrecision":8,"baseCommissionPrecision":8,
"quoteCommissionPrecision":8,"orderTypes":["LIMIT","MARKET"],"icebergAllowed":true,"ocoAllowed":true,
"quoteOrderQtyMarketAllowed":true,"allowTrailingStop":true,"cancelReplaceAllowed":true,
"isSpotTradingAllowed":true,"isMarginTradingAllowed":false,
"filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000.00","tickSize":"0.01"},
{"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000.00","stepSize":"0.00001"},
{"filterType":"NOTIONAL","minNotional":"5.00","applyMinToMarket":true,"maxNotional":"9000000.00","applyMaxToMarket":false,"avgPriceMins":5}],
"permissions":[],"permissionSets":[["SPOT"]],"defaultSelfTradePreventionMode":"EXPIRE_MAKER",
"allowedSelfTradePreventionModes":["EXPIRE_TAKER","EXPIRE_MAKER","EXPIRE_BOTH"]}]}"#;

const TICKER: &str = r#"{"symbol":"BTCUSDT","priceChange":"100.00","priceChangePercent":"0.2",
"weightedAvgPrice":"50000.00","prevClosePrice":"49900.00","lastPrice":"50000.50","lastQty":"0.01",
"bidPrice":"50000.00","bidQty":"1.5","askPrice":"50001.00","askQty":"2.5","openPrice":"49900.00",
"highPrice":"50500.00","lowPrice":"49500.00","volume":"1000.0","quoteVolume":"50000000.0",
"openTime":1699913600000,"closeTime":1700000000000,"firstId":1,"lastId":1000,"count":1000}"#;
