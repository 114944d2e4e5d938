//! A TLS terminator in front of a plain proxy, to stand for an https proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Listens on 127.0.0.1:0 with a fresh self-signed certificate for `localhost`,
/// and pipes each decrypted connection to `upstream`. Returns the address and a
/// root store that trusts the certificate.
pub async fn terminator(upstream: SocketAddr) -> (SocketAddr, rustls::RootCertStore) {
    let (addr, roots, _) = terminator_with_pem(upstream).await;
    (addr, roots)
}

/// As [`terminator`], with the certificate in PEM too, for clients such as curl.
pub async fn terminator_with_pem(
    upstream: SocketAddr,
) -> (SocketAddr, rustls::RootCertStore, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let pem = ck.cert.pem();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    (addr, roots, pem)
}
