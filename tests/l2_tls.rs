//! The shared tier over TLS: a `rediss://` URL against a `redis-server`
//! that listens with TLS, its certificate issued for 127.0.0.1 by a test
//! authority that the client trusts through `SSL_CERT_FILE` (read by
//! rustls-native-certs when a connection opens). Needs the `openssl` tool.

#![cfg(feature = "tls")]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::{cache, Cache, Error};
use support::redis::{free_port, temp_dir, RedisServer};
use support::wait::eventually;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache(key = "secret:<id>", ttl = 300, cache = cache)]
async fn secret(cache: &Cache, id: u64) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("secret {id}")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority (`<name>-ca.crt`) and, signed by it, a server
/// certificate for 127.0.0.1 (`<name>.crt`, `<name>.key`).
fn issue(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.crt");
    let (key, csr, cert) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let subject = format!("/CN={name} test authority");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &subject,
    ]);
    openssl(dir, &args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &args);
    let extensions = dir.join(format!("{name}.ext"));
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &extensions.to_string_lossy(),
        ],
    );
    (dir.join(ca), dir.join(cert), dir.join(key))
}

async fn process(url: &str) -> Result<Cache, Error> {
    Cache::builder()
        .prefix("tls")
        .redis(url)
        .l2_timeout(Duration::from_millis(500))
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_stores_reads_and_invalidates_over_tls() {
    let dir = temp_dir("tls");
    let (ca, cert, key) = issue(&dir, "server");
    let (other_ca, _, _) = issue(&dir, "stranger");
    let tls_port = free_port().to_string();
    let (cert, key, ca_arg) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
        ca.to_string_lossy().into_owned(),
    );
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_arg,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}/");

    // A client that does not trust the server's authority cannot connect.
    // (The test runs alone in its process under nextest, so changing the
    // environment touches no other test.)
    std::env::set_var("SSL_CERT_FILE", &other_ca);
    match process(&url).await {
        Err(Error::L2Connection(message)) => assert!(!message.is_empty()),
        other => panic!("an untrusted server must be refused, got {other:?}"),
    }
    // Plain Redis on the TLS port is refused too.
    let plain = format!("redis://127.0.0.1:{tls_port}/");
    assert!(
        process(&plain).await.is_err(),
        "no plain text on the TLS port"
    );

    std::env::set_var("SSL_CERT_FILE", &ca);
    let a = process(&url).await.expect("connects over TLS");
    let b = process(&url).await.expect("connects over TLS");
    assert_eq!(secret(&a, 1).await, "secret 1");
    assert_eq!(secret(&b, 1).await, "secret 1");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "b read a's fill over TLS");
    let exists = server.cmd(&["EXISTS", "tls:v1:secret:1"]).expect("EXISTS");
    assert_eq!(exists.as_int(), Some(1), "stored in the server");

    // The invalidation channel runs over TLS too.
    secret_invalidate(&a, 1).await.expect("invalidates");
    let before = RUNS.load(Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), async || {
            secret(&b, 1).await;
            RUNS.load(Ordering::SeqCst) > before
        })
        .await,
        "b hears a's invalidation"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
