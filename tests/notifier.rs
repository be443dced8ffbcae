//! The notifier over real protocols: admin alert and customer emails through a local SMTP
//! server (Python's aiosmtpd), the one-time reveal link over HTTP, outgoing signed webhooks
//! with a retry, and a notification stored while the SMTP server hangs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmauto::actors::messages::{Notify, NotifyKind, Severity};
use vmauto::actors::subscription::HandleEvents;
use vmauto::billing::{BillingEvent, EventKind};
use vmauto::config::{Config, Secret, SignatureScheme, SmtpTls, SourceConfig};

use crate::common::{Stack, TestApp, free_port};

const SINK_SCRIPT: &str = include_str!("fixtures/smtp_sink.py");
pub(crate) const PUBLIC_URL: &str = "http://vmauto.test";

/// The Python with aiosmtpd.
fn sink_python() -> PathBuf {
    crate::common::python::venv("smtp-venv", &["aiosmtpd==1.4.6"], "aiosmtpd").join("bin/python")
}

/// A local SMTP server that writes each received message to a directory as JSON.
pub(crate) struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    pub(crate) fn start() -> Self {
        let python = sink_python();
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("smtp_sink.py");
        std::fs::write(&script, SINK_SCRIPT).expect("write script");
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).expect("mail dir");
        let port = free_port();
        let mut child = Command::new(python)
            .arg(&script)
            .arg(&out)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("SMTP sink starts");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")), &mut line)
            .expect("read");
        assert_eq!(line.trim(), "READY", "the SMTP sink did not start");
        Self { child, port, dir }
    }

    pub(crate) fn messages(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path().join("mail"))
            .expect("mail dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")).collect()
    }

    /// Waits for a message to `rcpt`.
    pub(crate) async fn wait_for(&self, rcpt: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m["rcpt_tos"].to_string().contains(rcpt)) {
                return m;
            }
            assert!(Instant::now() < deadline, "no email to {rcpt} within {secs} s; got {:?}", self.messages());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for a message whose subject starts with `prefix`.
    pub(crate) async fn wait_for_subject(&self, prefix: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let found =
                self.messages().into_iter().find(|m| m["subject"].as_str().unwrap_or_default().starts_with(prefix));
            if let Some(m) = found {
                return m;
            }
            assert!(Instant::now() < deadline, "no email {prefix}… within {secs} s; got {:?}", self.messages());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) fn configure(&self, c: &mut Config) {
        c.smtp.enabled = true;
        c.smtp.host = "127.0.0.1".into();
        c.smtp.port = self.port;
        c.smtp.tls = SmtpTls::None;
        c.smtp.from = "vmauto <alerts@vmauto.test>".into();
        c.smtp.admin_recipients = vec!["ops@example.com".into()];
        c.server.public_url = PUBLIC_URL.into();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn part<'a>(m: &'a Value, ty: &str) -> &'a str {
    m["parts"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["type"] == ty))
        .and_then(|p| p["body"].as_str())
        .unwrap_or_else(|| panic!("no {ty} part in {m}"))
}

pub(crate) async fn rows(store: &vmauto::db::Store, sql: &str) -> Vec<Value> {
    store.query_one(sql, json!({}), 0).await.expect("query")
}

/// Polls `sql` until `pred` holds; panics after `secs`.
async fn wait_rows(store: &vmauto::db::Store, secs: u64, sql: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = rows(store, sql).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "gave up waiting on {sql}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dead_op() -> Notify {
    Notify {
        kind: NotifyKind::OperationDead,
        severity: Severity::Critical,
        title: "create of VPS <b>v1</b> failed".into(),
        body: "After 8 attempt(s): quota exceeded & more. Retry it from the VPS page.".into(),
        subject: Some("vps:v1".into()),
        portal_url: None,
    }
}

#[actix_web::test]
async fn operation_dead_emails_admins_a_text_and_html_alert() {
    let sink = SmtpSink::start();
    let t = TestApp::start_with(|c| sink.configure(c)).await;
    t.app.handles().notifier.send(dead_op()).await.expect("delivered");

    let m = sink.wait_for("ops@example.com", 30).await;
    assert_eq!(m["subject"], "[vmauto] create of VPS <b>v1</b> failed");
    assert_eq!(m["rcpt_tos"], json!(["ops@example.com"]));
    assert!(m["to"].as_str().unwrap_or_default().contains("ops@example.com"), "{}", m["to"]);
    assert!(m["mail_from"].as_str().unwrap_or_default().contains("alerts@vmauto.test"));
    assert_eq!(m["content_type"], "multipart/alternative");
    let text = part(&m, "text/plain");
    assert!(text.contains("[critical] create of VPS <b>v1</b> failed"), "{text}");
    assert!(text.contains("quota exceeded & more") && text.contains("About: vps:v1"), "{text}");
    let html = part(&m, "text/html");
    assert!(html.contains("create of VPS &lt;b&gt;v1&lt;/b&gt; failed"), "{html}");
    assert!(html.contains("quota exceeded &amp; more") && !html.contains("<b>v1"), "{html}");
    assert!(html.contains(PUBLIC_URL), "{html}");

    let store = &t.app.state.store;
    let attempts =
        wait_rows(store, 10, "SELECT * FROM notify_attempt WHERE channel = 'email'", |r| !r.is_empty()).await;
    assert_eq!(attempts[0]["ok"], true, "{attempts:?}");
    assert_eq!(attempts[0]["kind"], "operation_dead");
    let stored = rows(store, "SELECT VALUE kind FROM notification").await;
    assert_eq!(stored, vec![json!("operation_dead")]);
}

#[actix_web::test]
async fn a_hanging_smtp_server_does_not_hold_back_the_stored_notification() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.push(s);
        }
    });
    let t = TestApp::start_with(|c| {
        c.smtp.enabled = true;
        c.smtp.host = "127.0.0.1".into();
        c.smtp.port = port;
        c.smtp.tls = SmtpTls::None;
        c.smtp.admin_recipients = vec!["ops@example.com".into()];
        c.notify.timeout_secs = 3600;
    })
    .await;
    for _ in 0..3 {
        t.app.handles().notifier.send(dead_op()).await.expect("delivered");
    }
    let stored = rows(&t.app.state.store, "SELECT VALUE kind FROM notification").await;
    assert_eq!(stored.len(), 3, "every notification is stored although SMTP hangs: {stored:?}");
    let sent = rows(&t.app.state.store, "SELECT * FROM notify_attempt").await;
    assert!(sent.is_empty(), "no SMTP attempt can have finished: {sent:?}");
    held.abort();
}

pub(crate) fn subscribe(sub: &str) -> BillingEvent {
    crate::common::event(EventKind::Subscribe, sub, Some("starter"), None)
}

#[actix_web::test]
async fn customer_email_links_to_a_page_that_reveals_the_password_once() {
    let sink = SmtpSink::start();
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        sink.configure(c);
        c.sources.insert(
            "ghl".into(),
            SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: SignatureScheme::None,
                customer_email: true,
                ..SourceConfig::default()
            },
        );
    })
    .await;
    let out =
        s.t.app
            .handles()
            .subscription
            .send(HandleEvents { source: "ghl".into(), requested_by: "test".into(), events: vec![subscribe("sub-r")] })
            .await
            .expect("delivered");
    assert_eq!(out[0].status, "processed", "{out:?}");
    let vps = s
        .wait_for("VPS active", 60, "SELECT record::id(id) AS id, name, state, ips, root_password FROM vps", |r| {
            r.len() == 1 && r[0]["state"] == "active"
        })
        .await
        .remove(0);
    let sealer = vmauto::secrets::Sealer::from_file(&s.t.app.state.config.key_file()).expect("key");
    let password = sealer
        .open(
            vps["root_password"].as_str().expect("sealed"),
            &vmauto::secrets::root_password_place(vps["id"].as_str().expect("id")),
        )
        .expect("opens");
    let ip = vps["ips"][0].as_str().expect("an IP").to_string();
    let name = vps["name"].as_str().expect("name").to_string();

    let m = sink.wait_for("dana@example.com", 30).await;
    assert_eq!(m["subject"], format!("Your server {name} is ready"));
    assert!(!m["raw"].as_str().unwrap_or_default().contains(password.expose()), "no password in the email");
    let text = part(&m, "text/plain");
    let html = part(&m, "text/html");
    assert!(text.contains("Hello Dana <b>Reyes</b>,") && text.contains(&ip), "{text}");
    assert!(html.contains("Hello Dana &lt;b&gt;Reyes&lt;/b&gt;,"), "{html}");
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{PUBLIC_URL}/reveal/")))
        .unwrap_or_else(|| panic!("no reveal link in {text}"))
        .to_string();
    assert!(html.contains(&link), "the HTML part carries the same link");
    let token = link.rsplit('/').next().expect("token");
    assert_eq!(token.len(), 22, "128-bit token, base64url");
    let links = rows(&s.t.app.state.store, "SELECT * FROM reveal_link").await;
    assert_eq!(links.len(), 1);
    assert!(!links[0].to_string().contains(token), "only the token's hash is stored: {}", links[0]);
    assert_eq!(links[0]["used"], false);

    let path = link.trim_start_matches(PUBLIC_URL);
    // Opening the link (as a mail scanner would) only shows a confirm button.
    for _ in 0..2 {
        let (status, confirm) = s.t.get(path).await;
        assert_eq!(status, 200, "{confirm}");
        assert!(confirm.contains("Show my login details") && confirm.contains(&name), "{confirm}");
        assert!(!confirm.contains(password.expose()), "no password before the click");
    }
    let resp = s.t.http.post(s.t.url(path)).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let page = resp.text().await.expect("body");
    let escaped_password = password
        .expose()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('=', "&#x3D;")
        .replace('`', "&#x60;");
    assert!(page.contains(&escaped_password), "the page shows the password: {page}");
    assert!(page.contains(&name) && page.contains(&ip), "{page}");

    let again = s.t.http.post(s.t.url(path)).send().await.expect("request");
    assert_eq!(again.status().as_u16(), 410);
    let again = again.text().await.expect("body");
    let (status, _) = s.t.get(path).await;
    assert_eq!(status, 410, "a used link no longer offers the button");
    assert!(again.contains("already used") && !again.contains(&escaped_password), "{again}");
    let vps_id = &vmauto::lifecycle::VpsId::from(vps["id"].as_str().expect("id"));
    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    let expired = vmauto::notify::reveal::create(&s.t.app.state.store, vps_id, past).await.expect("link");
    let (status, page) = s.t.get(&format!("/reveal/{}", expired.expose())).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired") && !page.contains(&escaped_password), "{page}");
    let (status, unknown) = s.t.get("/reveal/AAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(status, 404, "{unknown}");
    let (status, _) = s.t.get("/reveal/%3Cscript%3E").await;
    assert_eq!(status, 404);
}

/// One request as the webhook receiver saw it.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

/// A tiny HTTP receiver: answers 500 to the first request and 200 to the rest.
pub(crate) async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks/vmauto", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let read = s.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..read]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    break (Some(i + 4), len);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + len {
                let read = s.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..read]);
            }
            let head = String::from_utf8_lossy(&buf[..start]).to_string();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
                .collect();
            let _ = tx.send(Received { headers, body: buf[start..start + len].to_vec() });
            let status = if n == 1 { "500 Internal Server Error" } else { "200 OK" };
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
            let _ = s.shutdown().await;
        }
    });
    (url, rx)
}

#[actix_web::test]
async fn outgoing_webhook_is_signed_and_retried_after_a_500() {
    let (url, mut rx) = receiver().await;
    let secret = Secret::new("notify-signing-secret");
    let t = TestApp::start_with(|c| {
        c.notify.webhook_urls = vec![url.clone()];
        c.notify.allow_private_webhook_urls = true;
        c.notify.webhook_secret = secret.clone();
        c.notify.retry_max_secs = 1;
    })
    .await;
    t.app.handles().notifier.send(dead_op()).await.expect("delivered");

    let mut got = Vec::new();
    for _ in 0..2 {
        let r = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("a webhook").expect("open");
        got.push(r);
    }
    for r in &got {
        let sig = r.headers.get("x-vmauto-signature").expect("signature header");
        assert!(vmauto::notify::webhook::verify(&secret, sig, &r.body), "signature verifies: {sig}");
        assert!(!vmauto::notify::webhook::verify(&Secret::new("wrong"), sig, &r.body));
        assert_eq!(r.headers.get("x-vmauto-event").map(String::as_str), Some("operation_dead"));
        assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
        let body: Value = serde_json::from_slice(&r.body).expect("json body");
        assert_eq!(body["kind"], "operation_dead");
        assert_eq!(body["severity"], "critical");
        assert_eq!(body["subject"], "vps:v1");
        assert_eq!(body["title"], "create of VPS <b>v1</b> failed");
    }
    assert_eq!(got[0].headers["x-vmauto-delivery"], got[1].headers["x-vmauto-delivery"], "one delivery, retried");

    let attempts = wait_rows(
        &t.app.state.store,
        10,
        "SELECT attempt, ok, detail, target FROM notify_attempt WHERE channel = 'webhook' ORDER BY attempt",
        |r| r.len() == 2,
    )
    .await;
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(attempts[0]["detail"], "HTTP 500");
    assert_eq!(attempts[1]["ok"], true);
    assert_eq!(attempts[1]["attempt"], 2);
}

/// Time from a `Notify` to the SMTP server holding the alert email.
/// `cargo test --test integration notifier::bench_notify_latency -- --ignored --nocapture`
#[actix_web::test]
#[ignore = "benchmark: prints figures"]
async fn bench_notify_latency() {
    let sink = SmtpSink::start();
    let t = TestApp::start_with(|c| sink.configure(c)).await;
    let mut samples = Vec::new();
    for i in 0..30 {
        // One at a time: each round waits for its own message.
        let before = sink.messages().len();
        let started = Instant::now();
        t.app.handles().notifier.do_send(Notify { title: format!("bench {i}"), ..dead_op() });
        loop {
            if sink.messages().len() > before {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no email");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "notify → SMTP server: n={} p50={:.1} ms p90={:.1} ms max={:.1} ms (target: within 10 s)",
        samples.len(),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 9 / 10]),
        ms(samples[samples.len() - 1])
    );
}

#[test]
fn notify_config_needs_a_secret_for_webhooks_and_reads_it_from_a_file() {
    use vmauto::config::CliOverrides;
    let env =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect::<Vec<_>>();
    let err = Config::load(
        None,
        env(&[("VMAUTO_NOTIFY__WEBHOOK_URLS", "[\"https://hooks.test/x\"]")]),
        &CliOverrides::default(),
    )
    .expect_err("a webhook URL without a secret");
    assert!(format!("{err:#}").contains("notify.webhook_secret"), "{err:#}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notify.secret");
    std::fs::write(&file, "s3cr3t-notify\n").expect("write");
    let c = Config::load(
        None,
        env(&[
            ("VMAUTO_NOTIFY__WEBHOOK_URLS", "[\"https://hooks.test/x\"]"),
            ("VMAUTO_NOTIFY__WEBHOOK_SECRET_FILE", file.to_str().expect("utf8")),
        ]),
        &CliOverrides::default(),
    )
    .expect("valid");
    assert_eq!(c.notify.webhook_secret.expose(), "s3cr3t-notify");
    assert!(!format!("{c:?}").contains("s3cr3t-notify"), "the secret never prints");
    let err = Config::load(
        None,
        env(&[
            ("VMAUTO_SOURCES__SHOP__PLUGIN", "ghl-workflow"),
            ("VMAUTO_SOURCES__SHOP__SIGNATURE", "none"),
            ("VMAUTO_SOURCES__SHOP__CUSTOMER_EMAIL", "true"),
        ]),
        &CliOverrides::default(),
    )
    .expect_err("customer email without SMTP");
    assert!(format!("{err:#}").contains("sources.shop.customer_email"), "{err:#}");
}

#[actix_web::test]
async fn graceful_shutdown_lets_a_retrying_webhook_finish() {
    let (url, mut rx) = receiver().await;
    let t = TestApp::start_with(|c| {
        c.notify.webhook_urls = vec![url.clone()];
        c.notify.allow_private_webhook_urls = true;
        c.notify.webhook_secret = Secret::new("drain-secret");
        c.notify.retry_max_secs = 1;
    })
    .await;
    t.app.handles().notifier.send(dead_op()).await.expect("delivered");
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("first attempt");
    assert!(first.is_some());
    // The first attempt got a 500; the retry is due a second later, during the shutdown.
    let TestApp { app, dir: _dir, .. } = t;
    app.stop().await.expect("stops");
    let second = rx.try_recv();
    assert!(second.is_ok(), "the retry was delivered before the notifier stopped");
}
