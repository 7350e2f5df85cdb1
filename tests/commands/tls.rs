//! The binary serving TLS as a pod runs it: the pair and the admin address
//! set by environment variables, the renewed pair taken up on a real
//! SIGHUP, and a pair that cannot be served refusing the start.

use std::process::Command;
use std::sync::Arc;

use crate::common::kubelet::SecretVolume;
use crate::common::process::Running;
use crate::common::tls::{self, Authority, Leaf};

fn serving_tls(
    dir: &std::path::Path,
    secret: &SecretVolume,
    admin: std::net::SocketAddr,
) -> Running {
    let config = dir.join("fluxrecv.yaml");
    std::fs::write(&config, "fluxRecvVersion: 1\nendpoints: []\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flux-recv"));
    cmd.args(["--listen", "127.0.0.1:0", "--resync-interval", "60m"])
        .arg("--config")
        .arg(&config)
        .env("FLUXRECV_TLS_CERT", secret.path("tls.crt"))
        .env("FLUXRECV_TLS_KEY", secret.path("tls.key"))
        .env("FLUXRECV_METRICS_LISTEN", admin.to_string());
    Running::start(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_takes_up_a_renewed_pair_and_probes_use_the_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new();
    let first = ca.leaf(tls::now() + 30 * 86_400);
    let renewed = ca.leaf(tls::now() + 90 * 86_400);
    let pair = |leaf: &Leaf| {
        [
            ("tls.crt", leaf.chain_pem.clone().into_bytes()),
            ("tls.key", leaf.key_pem.clone().into_bytes()),
        ]
    };
    let files = pair(&first);
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, &b[..])).collect();
    let mut secret = SecretVolume::mount(&dir.path().join("tls"), &files);
    let admin = crate::common::dead_addr();
    let mut server = serving_tls(dir.path(), &secret, admin);
    let addr = server.address();
    server.wait_for("watching for changes");
    let client: Arc<rustls::ClientConfig> = tls::client(ca.root(), &[]);
    let served = |addr| {
        let client = client.clone();
        async move { tls::served(&tls::connect(addr, &client).await.unwrap()) }
    };
    assert_eq!(served(addr).await, first.der);
    assert_eq!(tls::get(addr, &client, "/health").await.0, 404);
    let health = crate::common::get(format!("http://{admin}/health")).await;
    assert_eq!(health.status, 200);

    // The kubelet's update: taken up on its file events.
    let files = pair(&renewed);
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, &b[..])).collect();
    secret.update(&files);
    let line = server.wait_for("TLS certificate reloaded");
    assert!(line.contains("trigger: files"), "{line}");
    assert_eq!(served(addr).await, renewed.der);

    // Written inside the data directory, where no watch sees it: only the
    // SIGHUP can explain the change.
    let data = secret.data_dir();
    std::fs::write(data.join("tls.key"), &first.key_pem).unwrap();
    std::fs::write(data.join("tls.crt"), &first.chain_pem).unwrap();
    server.signal("HUP");
    let line = server.wait_for("TLS certificate reloaded");
    assert!(line.contains("trigger: sighup"), "{line}");
    assert_eq!(served(addr).await, first.der);
}

#[test]
fn an_expired_or_mismatched_pair_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new();
    let expired = ca.leaf(tls::now() - 60);
    let secret = SecretVolume::mount(
        &dir.path().join("tls"),
        &[
            ("tls.crt", expired.chain_pem.as_bytes()),
            ("tls.key", expired.key_pem.as_bytes()),
        ],
    );
    let mut server = serving_tls(dir.path(), &secret, crate::common::dead_addr());
    let line = server.wait_for("cannot start");
    assert!(line.contains("tls.crt: the certificate expired"), "{line}");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));

    let good = ca.leaf(tls::now() + 86_400);
    let other = ca.leaf(tls::now() + 86_400);
    let secret = SecretVolume::mount(
        &dir.path().join("tls2"),
        &[
            ("tls.crt", good.chain_pem.as_bytes()),
            ("tls.key", other.key_pem.as_bytes()),
        ],
    );
    let mut server = serving_tls(dir.path(), &secret, crate::common::dead_addr());
    let line = server.wait_for("cannot start");
    assert!(line.contains("does not match the certificate"), "{line}");
    assert_eq!(server.child.wait().unwrap().code(), Some(1));
}
