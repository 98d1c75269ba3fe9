//! The Prometheus endpoint (`strata serve --metrics-address`, or `metrics_address` in the
//! config): a scrape answers in the text format, and its counters and gauges move as
//! requests are made.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Daemon, no_labels, writable_dir};

/// A free port on the loopback interface (closed again at once; the daemon binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `method path` over HTTP/1.1 on a connection the client closes after one request;
/// returns (status line, head, body).
fn request(port: u16, method: &str, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head.lines().next().unwrap().to_owned();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// `GET path`; returns (status line, body), checking the body's announced length.
fn get(port: u16, path: &str) -> (String, String) {
    let (status, head, body) = request(port, "GET", path);
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    (status, body)
}

fn scrape(port: u16) -> String {
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

/// The value of the sample `series` (name and labels exactly as printed), 0 if absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Latency counts, error counts by code, snapshot gauges by kind, usage sums and Cleanup
/// counters each move with the requests that should move them.
#[tokio::test(flavor = "multi_thread")]
async fn scrape_follows_requests() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let d = Daemon::start_with("overlay", &["--metrics-address", &address]);
    let first = scrape(port);
    assert!(first.contains("strata_build_info{version=\""), "{first}");
    assert!(first.contains("# TYPE strata_rpc_duration_seconds histogram"));
    assert_eq!(
        value(
            &first,
            "strata_snapshots{backend=\"overlay\",kind=\"active\"}"
        ),
        0.0
    );

    let c = d.client().await;
    let mounts = c.prepare("base-a", "", no_labels()).await.unwrap();
    std::fs::write(writable_dir(&mounts).join("f"), vec![1u8; 40_000]).unwrap();
    c.commit("base", "base-a", no_labels(), None).await.unwrap();
    let top = c.prepare("top", "base", no_labels()).await.unwrap();
    std::fs::write(writable_dir(&top).join("g"), vec![1u8; 8_000]).unwrap();
    let active_usage = c.usage("top").await.unwrap();
    let base_usage = c.usage("base").await.unwrap();
    for _ in 0..3 {
        c.stat("missing").await.unwrap_err();
    }
    c.prepare("x", "missing", no_labels()).await.unwrap_err();
    c.clone()
        .with_snapshotter("native")
        .prepare("n", "", no_labels())
        .await
        .unwrap();

    let text = scrape(port);
    let v = |series: &str| value(&text, series);
    assert_eq!(
        v("strata_rpc_duration_seconds_count{op=\"prepare\",backend=\"overlay\"}"),
        3.0
    );
    assert_eq!(
        v("strata_rpc_duration_seconds_count{op=\"prepare\",backend=\"native\"}"),
        1.0
    );
    assert_eq!(
        v("strata_rpc_duration_seconds_bucket{op=\"commit\",backend=\"overlay\",le=\"+Inf\"}"),
        1.0
    );
    assert!(v("strata_rpc_duration_seconds_sum{op=\"commit\",backend=\"overlay\"}") > 0.0);
    assert_eq!(
        v("strata_rpc_errors_total{op=\"stat\",code=\"NotFound\"}"),
        3.0
    );
    assert_eq!(
        v("strata_rpc_errors_total{op=\"prepare\",code=\"NotFound\"}"),
        1.0
    );
    assert_eq!(
        v("strata_snapshots{backend=\"overlay\",kind=\"committed\"}"),
        1.0
    );
    assert_eq!(
        v("strata_snapshots{backend=\"overlay\",kind=\"active\"}"),
        1.0
    );
    assert_eq!(
        v("strata_snapshots{backend=\"native\",kind=\"active\"}"),
        1.0
    );
    assert_eq!(
        v("strata_snapshot_bytes{backend=\"overlay\",kind=\"committed\"}"),
        base_usage.size as f64
    );
    assert_eq!(
        v("strata_snapshot_inodes{backend=\"overlay\",kind=\"committed\"}"),
        base_usage.inodes as f64
    );
    assert_eq!(
        v("strata_snapshot_bytes{backend=\"overlay\",kind=\"active\"}"),
        active_usage.size as f64,
        "active snapshots: the last Usage computed"
    );
    assert_eq!(
        v("strata_active_snapshots_measured{backend=\"overlay\"}"),
        1.0
    );

    // List is timed too, and a malformed filter counted by its code.
    common::list_all(&c, &[]).await;
    let bad = c.list(&["kind=="]).await;
    assert!(bad.is_err());
    // Remove and Cleanup: the snapshot leaves the gauges, Cleanup's reclaim is counted.
    c.remove("top").await.unwrap();
    c.cleanup().await.unwrap();
    let text = scrape(port);
    let v = |series: &str| value(&text, series);
    assert_eq!(
        v("strata_rpc_duration_seconds_count{op=\"list\",backend=\"overlay\"}"),
        1.0
    );
    assert_eq!(
        v("strata_rpc_errors_total{op=\"list\",code=\"InvalidArgument\"}"),
        1.0
    );
    assert_eq!(
        v("strata_snapshots{backend=\"overlay\",kind=\"active\"}"),
        0.0
    );
    assert_eq!(
        v("strata_snapshot_bytes{backend=\"overlay\",kind=\"active\"}"),
        0.0
    );
    assert_eq!(v("strata_cleanup_runs_total{backend=\"overlay\"}"), 1.0);
    assert_eq!(
        v("strata_cleanup_reclaimed_directories_total{backend=\"overlay\"}"),
        1.0
    );
    assert!(v("strata_cleanup_reclaimed_bytes_total{backend=\"overlay\"}") >= 8_000.0);
    assert_eq!(v("strata_cleanup_runs_total{backend=\"native\"}"), 0.0);
    // The pull path is on by default; nothing asked it to pull.
    assert_eq!(v("strata_pull_layers_total"), 0.0);
    assert_eq!(v("strata_pull_fallbacks_total"), 0.0);

    let (status, _) = get(port, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, head, body) = request(port, "HEAD", "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.is_empty(), "HEAD answers no body: {body:?}");
    let (status, head, _) = request(port, "POST", "/metrics");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(head.contains("allow: get, head"), "{head}");
}

/// A client that keeps its connection open (as Prometheus does) gets one answer per request
/// on it, and an open connection does not hold up the daemon's shutdown.
#[tokio::test(flavor = "multi_thread")]
async fn scrapes_reuse_a_connection() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut d = Daemon::start_with("overlay", &["--metrics-address", &address]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    for _ in 0..3 {
        write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("content-length")
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).unwrap();
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("strata_build_info")
        );
    }
    let start = std::time::Instant::now();
    d.stop();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "shutdown took {:?}",
        start.elapsed()
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the connection is closed, not left hanging");
    assert!(rest.is_empty());
}

/// `metrics_address` in the config file turns the endpoint on as the flag does.
#[tokio::test(flavor = "multi_thread")]
async fn config_key_enables_the_endpoint() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("metrics_address = \"127.0.0.1:{port}\"\n")).unwrap();
    let _d = Daemon::start_with("native", &["--config", config.to_str().unwrap()]);
    let text = scrape(port);
    assert!(
        text.contains("strata_snapshots{backend=\"native\",kind=\"committed\"} 0"),
        "{text}"
    );
}
