//! What goes on the wire, seen by a bare TCP listener: header-name casing (SCP is reported
//! to be case-sensitive), the idempotency token, and a signature over the exact body bytes.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmauto::config::{Config, Secret};
use vmauto::provider::sangfor::SangforClient;
use vmauto::provider::sangfor::sign::{SigningScope, parse_authorization, signature};
use vmauto::provider::traffic::{Traffic, TrafficPolicy};
use vmauto::provider::{OpKey, Provider, ServerId};
use vmauto::telemetry::metrics::GatewayMetrics;

/// Accepts one connection, answers 200 with `answer`, and returns the raw request.
async fn one_request(listener: tokio::net::TcpListener, answer: &'static str) -> String {
    one_exchange(listener, "200 OK", "", answer).await
}

/// Accepts one connection, answers `status` with extra header lines and `answer`, and
/// returns the raw request.
async fn one_exchange(listener: tokio::net::TcpListener, status: &str, headers: &str, answer: &str) -> String {
    let (mut sock, _) = listener.accept().await.expect("accept");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await.expect("read");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len || n == 0 {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let resp = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    sock.write_all(resp.as_bytes()).await.expect("write");
    String::from_utf8(raw).expect("utf-8 request")
}

#[actix_web::test]
async fn headers_are_title_case_and_the_signature_covers_the_sent_body() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(one_request(listener, r#"{"code":0,"message":"","data":{"task_id":"t-1"}}"#));
    let mut config = Config::default();
    let s = &mut config.provider.sangfor;
    s.base_url = format!("http://127.0.0.1:{port}");
    s.access_key = "AKIDEXAMPLE".into();
    s.secret_key = Secret::new("SKEXAMPLESECRET");
    let traffic = Arc::new(Traffic::new(TrafficPolicy::from_config(s), GatewayMetrics::unregistered(), None));
    let client = SangforClient::new(s, traffic).expect("client");
    let op = OpKey::new("operation:wire");
    let task = client.start(&ServerId::from("abc"), &op).await.expect("start");
    assert_eq!(task.as_str(), "t-1");

    let raw = server.await.expect("server task");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("POST /janus/20180725/servers/abc/start HTTP/1.1\r\n"), "{head}");
    for name in ["Authorization", "X-Amz-Date", "X-Client-Token", "Content-Type"] {
        assert!(head.contains(&format!("\r\n{name}: ")), "{name} not title case in:\n{head}");
    }
    let header = |name: &str| {
        head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string)).expect("header")
    };
    assert_eq!(header("X-Client-Token"), op.token("start_server"));
    let parsed = parse_authorization(&header("Authorization")).expect("EC2 header");
    assert_eq!((parsed.region.as_str(), parsed.service.as_str()), ("cn-south-1", "open-api"));
    assert_eq!(parsed.signed_headers, vec!["x-amz-date"]);
    let amz_date = header("X-Amz-Date");
    let scope = SigningScope {
        access_key: "AKIDEXAMPLE",
        secret_key: "SKEXAMPLESECRET",
        region: "cn-south-1",
        service: "open-api",
        amz_date: &amz_date,
    };
    let expected =
        signature(&scope, "POST", "/janus/20180725/servers/abc/start", &[("x-amz-date", &amz_date)], body.as_bytes());
    assert_eq!(parsed.signature, expected, "signature over the bytes that were sent");
}

#[actix_web::test]
async fn a_rejected_signature_with_a_distant_server_clock_is_explained_as_clock_skew() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        one_exchange(
            listener,
            "401 Unauthorized",
            "Date: Mon, 01 Jan 2001 00:00:00 GMT\r\n",
            r#"{"errcode":"0x120010010001","message":"signature does not match"}"#,
        )
        .await
    });
    let mut config = Config::default();
    let s = &mut config.provider.sangfor;
    s.base_url = format!("http://127.0.0.1:{port}");
    s.access_key = "AK".into();
    s.secret_key = Secret::new("SK");
    let err = vmauto::provider::check::check(&config).await.expect_err("refused").to_string();
    assert!(err.contains("clock") && err.contains("NTP"), "{err}");
    let raw = server.await.expect("server task");
    assert!(raw.starts_with("GET /janus/20180725/system/version HTTP/1.1"), "{raw}");
}
