//! The TLS certificate renewed in a `kubernetes.io/tls` Secret volume
//! (written as the kubelet writes it) while flux-recv serves: new
//! handshakes get the new pair, open connections keep working, broken
//! updates keep the last good pair (logged once, counted), the expiry
//! gauge follows the leaf served.

use std::sync::Arc;

use flux_recv::options::Options;
use flux_recv::reload::Trigger;
use flux_recv::tls::PairFiles;

use crate::common::kubelet::SecretVolume;
use crate::common::tls::{self, Authority, Leaf};
use crate::common::{eventually_async, write_config, FakeFluxd, Recv};
use crate::{log_line, metric, until_logged, NO_RESYNC, WITHIN};

/// flux-recv serving TLS from a Secret volume holding `leaf`.
struct TlsPod {
    _root: tempfile::TempDir,
    secret: SecretVolume,
    recv: Recv,
    client: Arc<rustls::ClientConfig>,
    _fluxd: FakeFluxd,
}

impl TlsPod {
    async fn start(ca: &Authority, leaf: &Leaf) -> TlsPod {
        let fluxd = FakeFluxd::start().await;
        let root = tempfile::tempdir().unwrap();
        let config = write_config(root.path(), &fluxd.api(), "");
        let secret = SecretVolume::mount(&root.path().join("tls"), &files(leaf));
        let options = Options {
            resync_interval: NO_RESYNC,
            tls: Some(PairFiles {
                cert: secret.path("tls.crt"),
                key: secret.path("tls.key"),
            }),
            ..Options::default()
        };
        let recv = Recv::start(&config, options).await;
        until_logged(&recv, &["watching for changes"]).await;
        TlsPod {
            _root: root,
            secret,
            recv,
            client: tls::client(ca.root(), &[]),
            _fluxd: fluxd,
        }
    }

    /// The leaf a new handshake gets.
    async fn served(&self) -> rustls::pki_types::CertificateDer<'static> {
        let stream = tls::connect(self.recv.addr, &self.client).await.unwrap();
        tls::served(&stream)
    }

    async fn until_served(&self, leaf: &Leaf, what: &str) {
        eventually_async(what, WITHIN, || async { self.served().await == leaf.der }).await;
    }

    fn metric(&self, series: &str) -> f64 {
        metric(&self.recv, series)
    }
}

fn files(leaf: &Leaf) -> Vec<(&'static str, &[u8])> {
    vec![
        ("tls.crt", leaf.chain_pem.as_bytes()),
        ("tls.key", leaf.key_pem.as_bytes()),
    ]
}

const EXPIRY: &str = "fluxrecv_tls_certificate_expiry_timestamp_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let ca = Authority::new();
    let first = ca.leaf(tls::now() + 30 * 86_400);
    let renewed = ca.leaf(tls::now() + 90 * 86_400);
    let mut pod = TlsPod::start(&ca, &first).await;
    assert_eq!(pod.served().await, first.der);
    assert_eq!(pod.metric(EXPIRY), first.not_after as f64);

    // A connection open across the renewal.
    let mut open = tls::connect(pod.recv.addr, &pod.client).await.unwrap();
    assert_eq!(
        tls::request(&mut open, "GET", "/health", &[], b"").await.0,
        200
    );

    pod.secret.update(&files(&renewed));
    pod.until_served(&renewed, "the renewed certificate is served")
        .await;
    // The whole chain, as the file gives it: leaf and intermediate.
    let stream = tls::connect(pod.recv.addr, &pod.client).await.unwrap();
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap().len(), 2);
    assert_eq!(pod.metric(EXPIRY), renewed.not_after as f64);
    assert!(pod.metric("fluxrecv_tls_reloads_total{result=\"changed\"}") >= 1.0);
    assert!(log_line(&pod.recv, &["TLS certificate reloaded", "tls.crt"]).is_some());

    assert_eq!(
        tls::request(&mut open, "GET", "/health", &[], b"").await.0,
        200
    );
    assert_eq!(
        tls::served(&open),
        first.der,
        "the open session keeps its certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_updates_keep_the_last_good_pair() {
    let ca = Authority::new();
    let good = ca.leaf(tls::now() + 30 * 86_400);
    let other = ca.leaf(tls::now() + 60 * 86_400);
    let expired = ca.leaf(tls::now() - 60);
    let mut pod = TlsPod::start(&ca, &good).await;
    let failed = "fluxrecv_tls_reloads_total{result=\"failed\"}";

    // The new certificate with the old key: they do not match.
    pod.secret.update(&[
        ("tls.crt", other.chain_pem.as_bytes()),
        ("tls.key", good.key_pem.as_bytes()),
    ]);
    until_logged(
        &pod.recv,
        &["TLS reload failed", "does not match the certificate"],
    )
    .await;
    assert_eq!(pod.served().await, good.der);
    assert!(pod.metric(failed) >= 1.0);
    // Found again (another event, a resync): not logged again.
    let failures = pod.metric(failed);
    pod.recv.service.reloader().request(Trigger::Resync);
    eventually_async("the re-read", WITHIN, || async {
        pod.metric(failed) > failures
    })
    .await;
    let lines = |recv: &Recv| {
        recv.logs
            .text()
            .lines()
            .filter(|l| l.contains("TLS reload failed"))
            .count()
    };
    assert_eq!(lines(&pod.recv), 1, "{}", pod.recv.logs.text());

    // Garbage, then an expired certificate: each logged, neither served.
    pod.secret
        .update(&[("tls.crt", b"garbage"), ("tls.key", b"garbage")]);
    until_logged(
        &pod.recv,
        &["TLS reload failed", "tls.crt: not a PEM certificate chain"],
    )
    .await;
    assert_eq!(pod.served().await, good.der);
    pod.secret.update(&files(&expired));
    until_logged(&pod.recv, &["TLS reload failed", "the certificate expired"]).await;
    assert_eq!(pod.served().await, good.der);
    assert_eq!(pod.metric(EXPIRY), good.not_after as f64);
    assert_eq!(lines(&pod.recv), 3);
    // No key material in any line.
    let key_line = good.key_pem.lines().nth(1).unwrap();
    assert!(!pod.recv.logs.text().contains(key_line));

    // A good pair again.
    pod.secret.update(&files(&other));
    pod.until_served(&other, "the good pair after the broken ones")
        .await;
    assert!(log_line(&pod.recv, &["the TLS certificate and key load again"]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_pair() {
    let ca = Authority::new();
    let first = ca.leaf(tls::now() + 30 * 86_400);
    let renewed = ca.leaf(tls::now() + 90 * 86_400);
    let pod = TlsPod::start(&ca, &first).await;
    // Written inside the data directory: no event where flux-recv watches
    // (as a lost event looks), so only the SIGHUP can explain the change.
    let data = pod.secret.data_dir();
    std::fs::write(data.join("tls.key"), &renewed.key_pem).unwrap();
    std::fs::write(data.join("tls.crt"), &renewed.chain_pem).unwrap();
    pod.recv.service.reloader().request(Trigger::Hangup);
    pod.until_served(&renewed, "the pair after SIGHUP").await;
}
