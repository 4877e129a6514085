//! The HTTPS listener with real certificates from a private CA and a real rustls client:
//! certificates by SNI, HTTP/2 by ALPN, and certificates refused at start-up.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use support::tls::{Leaf, TestCa};
use support::{Node, example, free_port, run_outpost};

fn write_leaf(dir: &Path, name: &str, leaf: &Leaf) -> (String, String) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &leaf.cert_pem).expect("cert");
    std::fs::write(&key, &leaf.key_pem).expect("key");
    (cert.display().to_string(), key.display().to_string())
}

/// A config with a TLS listener whose default certificate is `default`, and tenants
/// `a` (hello, `a.test`, own certificate) and `b` (echo, `b.test`, own certificate).
fn config(
    dir: &Path,
    addr: SocketAddr,
    tls: SocketAddr,
    default: &(String, String),
    a: &(String, String),
    b: &(String, String),
) -> std::path::PathBuf {
    let text = format!(
        "[node]\ndata_dir = \"data\"\nmax_instances = 50\n\n\
         [server]\nlisten = \"{addr}\"\ntls = {{ listen = \"{tls}\", cert = {:?}, key = {:?} }}\n\n\
         [[tenant]]\nname = \"a\"\ncomponent = {:?}\nroutes = [\"a.test\"]\ntls = {{ cert = {:?}, key = {:?} }}\n\n\
         [[tenant]]\nname = \"b\"\ncomponent = {:?}\nroutes = [\"b.test\"]\ntls = {{ cert = {:?}, key = {:?} }}\n",
        default.0,
        default.1,
        example("hello").display().to_string(),
        a.0,
        a.1,
        example("echo").display().to_string(),
        b.0,
        b.1,
    );
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Connects to `addr` as `name` and returns the leaf certificate the node presented and
/// the protocol ALPN chose.
async fn handshake(
    ca: &TestCa,
    addr: SocketAddr,
    name: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"h2", b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    connector
        .connect(ServerName::try_from(name.to_string()).expect("name"), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake as {name}: {e}"))
}

fn presented(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.as_ref().to_vec())
        .expect("a certificate")
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn each_hostname_gets_its_own_certificate_and_http2_is_negotiated() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let default_leaf = ca.issue(&["default.test"]);
    let (a_leaf, b_leaf) = (ca.issue(&["a.test"]), ca.issue(&["b.test", "*.b.test"]));
    let default = write_leaf(dir.path(), "default", &default_leaf);
    let a = write_leaf(dir.path(), "a", &a_leaf);
    let b = write_leaf(dir.path(), "b", &b_leaf);
    let (addr, tls) = (free_port(), free_port());
    let config = config(dir.path(), addr, tls, &default, &a, &b);
    let node = Node::start_with(dir, &config, addr).await;

    let stream_a = handshake(&ca, tls, "a.test").await;
    assert_eq!(
        presented(&stream_a),
        der(&a_leaf.cert_pem),
        "a.test got another certificate"
    );
    assert_eq!(
        stream_a.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "HTTP/2 by ALPN"
    );
    let stream_b = handshake(&ca, tls, "b.test").await;
    assert_eq!(
        presented(&stream_b),
        der(&b_leaf.cert_pem),
        "b.test got another certificate"
    );
    let other = handshake(&ca, tls, "default.test").await;
    assert_eq!(
        presented(&other),
        der(&default_leaf.cert_pem),
        "the default certificate"
    );

    // HTTP/2 requests over the negotiated connection reach each tenant.
    for (stream, host, expect) in [
        (stream_a, "a.test", "hello from outpost"),
        (stream_b, "b.test", "\"method\""),
    ] {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        let request = http::Request::builder()
            .uri(format!("https://{host}/via-h2"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("h2 request");
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains(expect),
            "{host}: {body:?}"
        );
    }

    // HTTP/1.1 still works on the TLS listener for clients that only speak it.
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(tls).await.expect("connect");
    let stream = connector
        .connect(ServerName::try_from("a.test").expect("name"), tcp)
        .await
        .expect("handshake");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri("/")
        .header("host", "a.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h1 request");
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    drop(node);
}

/// Starts `outpost serve` on a config whose tenant `a` has `leaf` and returns its output.
fn refused_start(ca: &TestCa, leaf: &Leaf, key_from: Option<&Leaf>) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let default = write_leaf(dir.path(), "default", &ca.issue(&["default.test"]));
    let mut a = write_leaf(dir.path(), "a", leaf);
    if let Some(other) = key_from {
        a.1 = write_leaf(dir.path(), "other", other).1;
    }
    let b = write_leaf(dir.path(), "b", &ca.issue(&["b.test"]));
    let config = config(dir.path(), free_port(), free_port(), &default, &a, &b);
    let config = config.display().to_string();
    run_outpost(&["serve", "--config", &config])
}

#[test]
fn an_expired_certificate_is_a_start_up_error() {
    let ca = TestCa::new();
    let expired = ca.issue_with(&["a.test"], |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (code, output) = refused_start(&ca, &expired, None);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("outpost.toml:"), "names the file: {output}");
    assert!(output.contains("tenant `a`: `tls`"), "{output}");
    assert!(output.contains("expired"), "{output}");
}

#[test]
fn a_certificate_for_another_name_is_a_start_up_error() {
    let ca = TestCa::new();
    let (code, output) = refused_start(&ca, &ca.issue(&["elsewhere.test"]), None);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("does not cover `a.test`"), "{output}");
    assert!(output.contains("elsewhere.test"), "{output}");
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_a_start_up_error() {
    let ca = TestCa::new();
    let (code, output) = refused_start(&ca, &ca.issue(&["a.test"]), Some(&ca.issue(&["a.test"])));
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("does not belong to the certificate"),
        "{output}"
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_sighup() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let default = write_leaf(dir.path(), "default", &ca.issue(&["default.test"]));
    let first = ca.issue(&["a.test"]);
    let a = write_leaf(dir.path(), "a", &first);
    let b = write_leaf(dir.path(), "b", &ca.issue(&["b.test"]));
    let (addr, tls) = (free_port(), free_port());
    let config = config(dir.path(), addr, tls, &default, &a, &b);
    let node = Node::start_with(dir, &config, addr).await;
    assert_eq!(
        presented(&handshake(&ca, tls, "a.test").await),
        der(&first.cert_pem)
    );

    let renewed = ca.issue(&["a.test"]);
    write_leaf(node.dir.path(), "a", &renewed);
    node.signal("HUP");
    assert!(
        node.wait_for_log(|l| l.contains("config reloaded")).await,
        "{}",
        node.logs()
    );
    assert_eq!(
        presented(&handshake(&ca, tls, "a.test").await),
        der(&renewed.cert_pem),
        "the renewed certificate is served without a restart"
    );
}
