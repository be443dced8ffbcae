//! EC2 signatures (the document's vectors and live signing, both header variants) and the
//! token flow, including expiry and wrong credentials.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use vmauto::provider::sangfor::sign::{SigningScope, authorization};

use super::{Sim, assert_error, login};

/// Sends a request with explicit headers and raw body; returns status and JSON.
async fn raw(sim: &Sim, method: Method, path_and_query: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut req = sim.http.request(method, format!("{}{path_and_query}", sim.base));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if !body.is_empty() {
        req = req.header("Content-Type", "application/json").body(body.to_vec());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const DOC_CREATE: &str = r#"{"az_id": "az1", "image_id": "img1", "storage_tag_id": "tag1", "cores": 2, "sockets": 1, "memory_mb": 2048, "count": 1, "name": "vm1", "description": "", "networks": [{"vif_id": "net0", "vpc_id": "vpc1", "subnet_id": "sn1", "connect": 1, "model": "virtio"}], "power_on": 1, "location": {"id": "cluster"}}"#;

#[actix_web::test]
async fn ec2_document_test_vectors_are_accepted() {
    let sim = Sim::start_with(|c| {
        c.access_key = "AKIDEXAMPLE".into();
        c.secret_key = "SKEXAMPLESECRET".into();
    })
    .await;
    let auth = |sig: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/cn-south-1/open-api/aws4_request, SignedHeaders=x-amz-date, Signature={sig}"
        )
    };
    let date = ("X-Amz-Date", "20240102T030405Z".to_string());
    // The query string is not signed: the vector for /servers holds with page parameters.
    let (s, v) = raw(
        &sim,
        Method::GET,
        "/janus/20180725/servers?page_num=0&page_size=100",
        &[("Authorization", auth("f21557db16961161064c231377b281f9258bfabfc56f016fc6b3a1c1b55b7494")), date.clone()],
        b"",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["total_size"], 0);
    // Accepted signatures on ids that do not exist: authentication passed, the resource did not.
    let (s, v) = raw(
        &sim,
        Method::POST,
        "/janus/20180725/servers/abc/stop",
        &[("Authorization", auth("a533197c0b563826889b355de5a52f29be4762ca2bd46dca0d09e8b08a0ae34a")), date.clone()],
        b"{}",
    )
    .await;
    assert_error(s, &v, 404);
    let (s, v) = raw(
        &sim,
        Method::DELETE,
        "/janus/20180725/servers/abc",
        &[("Authorization", auth("7742865d2f458e858cc865158d2f3fc5e99d47be3783ffe92c70624aa8415c65")), date.clone()],
        br#"{"force": 0}"#,
    )
    .await;
    assert_error(s, &v, 404);
    let (s, v) = raw(
        &sim,
        Method::POST,
        "/janus/20180725/servers",
        &[("Authorization", auth("3f1f7429d8d532f869c65912320436c8037e2f564b3b2ddc5ea6be6f5e6399f5")), date.clone()],
        DOC_CREATE.as_bytes(),
    )
    .await;
    assert_error(s, &v, 400);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("az1")), "{v}");
    // The same body re-serialized differently no longer matches: the server hashes raw bytes.
    let reserialized = serde_json::to_vec(&serde_json::from_str::<Value>(DOC_CREATE).expect("json")).expect("bytes");
    let (s, v) = raw(
        &sim,
        Method::POST,
        "/janus/20180725/servers",
        &[("Authorization", auth("3f1f7429d8d532f869c65912320436c8037e2f564b3b2ddc5ea6be6f5e6399f5")), date],
        &reserialized,
    )
    .await;
    assert_error(s, &v, 401);
    sim.stop().await;
}

/// Signs like a live client: now as X-Amz-Date, with or without the cookie variant.
fn signed(
    sim: &Sim,
    method: &str,
    path: &str,
    body: &[u8],
    cookie: Option<&str>,
    region: &str,
    service: &str,
) -> Vec<(&'static str, String)> {
    let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let scope = SigningScope {
        access_key: sim.server.access_key(),
        secret_key: sim.server.secret_key(),
        region,
        service,
        amz_date: &amz_date,
    };
    let mut out = Vec::new();
    let header = match cookie {
        Some(c) => {
            out.push(("Cookie", c.to_string()));
            authorization(&scope, method, path, &[("cookie", c), ("x-amz-date", &amz_date)], body)
        }
        None => authorization(&scope, method, path, &[("x-amz-date", &amz_date)], body),
    };
    out.push(("Authorization", header));
    out.push(("X-Amz-Date", amz_date));
    out
}

#[actix_web::test]
async fn ec2_header_variants_and_rejections() {
    let sim = Sim::start().await;
    let path = "/janus/20180725/azs";
    let plain = signed(&sim, "GET", path, b"", None, "cn-south-1", "open-api");
    let (s, v) = raw(&sim, Method::GET, path, &plain, b"").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    let cookie = "aCMPAuthToken=testtoken1234567890abcdef";
    let with_cookie = signed(&sim, "GET", path, b"", Some(cookie), "regionOne", "sdk-api");
    assert!(with_cookie[1].1.contains("SignedHeaders=cookie;x-amz-date"));
    let (s, v) = raw(&sim, Method::GET, path, &with_cookie, b"").await;
    assert_eq!(s, 200, "{v}");
    // A signed cookie that is changed in transit breaks the signature.
    let mut tampered = with_cookie.clone();
    tampered[0].1 = "aCMPAuthToken=other".into();
    let (s, v) = raw(&sim, Method::GET, path, &tampered, b"").await;
    assert_error(s, &v, 401);
    // A POST with a body, signed over the exact bytes.
    let body = br#"{"force": 1}"#;
    let p = "/janus/20180725/servers/nope/stop";
    let (s, v) = raw(&sim, Method::POST, p, &signed(&sim, "POST", p, body, None, "cn-south-1", "open-api"), body).await;
    assert_error(s, &v, 404);
    let (s, v) =
        raw(&sim, Method::POST, p, &signed(&sim, "POST", p, b"{}", None, "cn-south-1", "open-api"), body).await;
    assert_error(s, &v, 401);
    // Wrong secret, wrong access key, missing date, no header at all.
    let mut other = plain.clone();
    other[0].1 = other[0].1.replace(sim.server.access_key(), "unknown-ak");
    let (s, v) = raw(&sim, Method::GET, path, &other, b"").await;
    assert_error(s, &v, 401);
    let (s, v) = raw(&sim, Method::GET, path, &plain[..1], b"").await;
    assert_error(s, &v, 401);
    let (s, v) = raw(&sim, Method::GET, path, &[], b"").await;
    assert_error(s, &v, 401);
    let wrong_secret = {
        let amz = plain[1].1.clone();
        let scope = SigningScope {
            access_key: sim.server.access_key(),
            secret_key: "not-the-secret",
            region: "cn-south-1",
            service: "open-api",
            amz_date: &amz,
        };
        vec![
            ("Authorization", authorization(&scope, "GET", path, &[("x-amz-date", &amz)], b"")),
            ("X-Amz-Date", amz.clone()),
        ]
    };
    let (s, v) = raw(&sim, Method::GET, path, &wrong_secret, b"").await;
    assert_error(s, &v, 401);
    sim.stop().await;
}

#[actix_web::test]
async fn token_login_expiry_and_wrong_credentials() {
    let sim = Sim::start_with(|c| c.token_ttl_secs = 1).await;
    let (s, v) = sim.get("/janus/20180725/azs").await;
    assert_eq!(s, 200, "{v}");
    // The login answer has the Keystone-like shape clients read.
    let (s, v) = login(&sim.http, &sim.base, "admin", sim.server.password()).await;
    assert_eq!(s, 200);
    assert!(v["data"]["access"]["token"]["expires"].as_str().is_some());
    assert_eq!(v["data"]["access"]["user"]["username"], "admin");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, v) = sim.get("/janus/20180725/azs").await;
    assert_error(s, &v, 401);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("expired")), "{v}");
    let (s, v) = login(&sim.http, &sim.base, "admin", "wrong-password").await;
    assert_error(s, &v, 401);
    let (s, v) = login(&sim.http, &sim.base, "root", sim.server.password()).await;
    assert_error(s, &v, 401);
    // A password that is not the RSA ciphertext is refused the same way.
    let bogus = serde_json::json!({"auth": {"passwordCredentials": {"username": "admin", "password": "00ff"}}});
    let r = sim.http.post(format!("{}/janus/authenticate", sim.base)).json(&bogus).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let (s, v) =
        raw(&sim, Method::GET, "/janus/20180725/azs", &[("Authorization", "Token nonsense".into())], b"").await;
    assert_error(s, &v, 401);
    sim.stop().await;
}

#[actix_web::test]
async fn tokens_can_be_expired_from_the_control_endpoint_and_old_key_path_works() {
    let sim = Sim::start().await;
    let old: Value =
        sim.http.get(format!("{}/janus/public-key", sim.base)).send().await.expect("get").json().await.expect("json");
    let new: Value = sim
        .http
        .get(format!("{}/janus/v2/public-key", sim.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(old["data"]["public_key"], new["data"]["public_key"]);
    assert_eq!(new["data"]["public_key"].as_str().map(str::len), Some(256), "1024-bit modulus in hex");
    let (s, _) = sim.get("/janus/20180725/servers").await;
    assert_eq!(s, 200);
    let (s, v) = sim.control(Method::POST, "/_sim/tokens/expire", None).await;
    assert_eq!(s, 200);
    assert!(v["expired"].as_u64().is_some_and(|n| n >= 1));
    let (s, v) = sim.get("/janus/20180725/servers").await;
    assert_error(s, &v, 401);
    sim.stop().await;
}

#[actix_web::test]
async fn clock_skew_window_when_enabled() {
    let sim = Sim::start_with(|c| {
        c.access_key = "AKIDEXAMPLE".into();
        c.secret_key = "SKEXAMPLESECRET".into();
        c.max_clock_skew_secs = 900;
    })
    .await;
    // The document's 2024 vector is now far outside the window.
    let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/cn-south-1/open-api/aws4_request, SignedHeaders=x-amz-date, Signature=f21557db16961161064c231377b281f9258bfabfc56f016fc6b3a1c1b55b7494";
    let (s, v) = raw(
        &sim,
        Method::GET,
        "/janus/20180725/servers",
        &[("Authorization", header.to_string()), ("X-Amz-Date", "20240102T030405Z".to_string())],
        b"",
    )
    .await;
    assert_error(s, &v, 401);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("skew")), "{v}");
    // A fresh signature is inside it.
    let path = "/janus/20180725/servers";
    let (s, v) =
        raw(&sim, Method::GET, path, &signed(&sim, "GET", path, b"", None, "cn-south-1", "open-api"), b"").await;
    assert_eq!(s, 200, "{v}");
    sim.stop().await;
}
