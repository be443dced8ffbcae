//! Paging, idempotency, malformed input, version aliases, the catalogue, rate limits, the
//! state file and HTTPS.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use vmauto::sim::world::AZ_A;

use super::{Sim, assert_error, create_body};

const S: &str = "/janus/20180725/servers";

#[actix_web::test]
async fn pages_are_zero_based_clamped_and_end_with_an_empty_next() {
    let sim = Sim::start().await;
    let mut body = create_body("pg");
    body["count"] = json!(5);
    let d = sim.data(Method::POST, S, Some(body)).await;
    assert_eq!(d["uuids"].as_array().map(Vec::len), Some(5));
    let mut seen = Vec::new();
    let mut page = 0;
    let mut nexts = Vec::new();
    loop {
        let p = sim.data(Method::GET, &format!("{S}?page_num={page}&page_size=2"), None).await;
        assert_eq!(p["total_size"], 5);
        assert_eq!(p["page_num"], page);
        for s in p["data"].as_array().expect("data") {
            seen.push(s["name"].as_str().expect("name").to_string());
        }
        let next = p["next_page_num"].as_str().expect("next_page_num is a string").to_string();
        nexts.push(next.clone());
        if next.is_empty() {
            break;
        }
        page = next.parse().expect("numeric next");
    }
    assert_eq!(nexts, ["1", "2", ""]);
    assert_eq!(seen, ["pg-1", "pg-2", "pg-3", "pg-4", "pg-5"]);
    let p = sim.data(Method::GET, &format!("{S}?page_num=7&page_size=2"), None).await;
    assert_eq!((p["data"].as_array().map(Vec::len), p["next_page_num"].as_str()), (Some(0), Some("")));
    let p = sim.data(Method::GET, &format!("{S}?page_size=1000"), None).await;
    assert_eq!(p["page_size"], 100);
    let p = sim.data(Method::GET, &format!("{S}?page_size=0"), None).await;
    assert_eq!((p["page_size"].as_u64(), p["next_page_num"].as_str()), (Some(1), Some("1")));
    let (st, v) = sim.get(&format!("{S}?page_num=abc")).await;
    assert_error(st, &v, 400);
    sim.stop().await;
}

#[actix_web::test]
async fn x_client_token_replays_the_same_answer_once() {
    let sim = Sim::start().await;
    let send = |path: &str, token: &str| {
        sim.http
            .post(format!("{}{path}", sim.base))
            .header("Authorization", format!("Token {}", sim.token))
            .header("X-Client-Token", token)
            .json(&create_body("idem-1"))
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    let a = send(S, &token).send().await.expect("first");
    assert_eq!(a.status().as_u16(), 200);
    let a = a.text().await.expect("body");
    let b = send(S, &token).send().await.expect("second");
    assert_eq!(b.status().as_u16(), 200);
    assert_eq!(a, b.text().await.expect("body"), "same token, same answer");
    let l = sim.data(Method::GET, &format!("{S}?name=idem-1"), None).await;
    assert_eq!(l["total_size"], 1, "exactly one VM");
    let state = sim.state().await;
    assert_eq!(state["requests"]["POST /janus/{v}/servers"], 2);
    assert_eq!(state["tasks"].as_array().map(Vec::len), Some(1));
    // Same token on another path: conflict.
    let c = send("/janus/20180725/volumes", &token).send().await.expect("third");
    assert_eq!(c.status().as_u16(), 409);
    let v: Value = c.json().await.expect("json");
    assert_error(409, &v, 409);
    // A fresh token creates another VM.
    let d = send(S, &uuid::Uuid::new_v4().simple().to_string()).send().await.expect("fresh");
    assert_eq!(d.status().as_u16(), 200);
    assert_eq!(sim.data(Method::GET, &format!("{S}?name=idem-1"), None).await["total_size"], 2);
    sim.stop().await;
}

#[actix_web::test]
async fn malformed_input_gets_scp_shaped_errors() {
    let sim = Sim::start_with(|c| c.max_body_bytes = 4096).await;
    let auth = format!("Token {}", sim.token);
    let post_raw = |body: Vec<u8>| {
        sim.http
            .post(format!("{}{S}", sim.base))
            .header("Authorization", auth.clone())
            .header("Content-Type", "application/json")
            .body(body)
    };
    let r = post_raw(b"{not json".to_vec()).send().await.expect("bad json");
    let st = r.status().as_u16();
    let v: Value = r.json().await.expect("json");
    assert_error(st, &v, 400);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("JSON")), "{v}");
    let r = post_raw(b"[1,2]".to_vec()).send().await.expect("array");
    assert_eq!(r.status().as_u16(), 400);
    let mut body = create_body("m");
    body.as_object_mut().expect("object").remove("image_id");
    let (st, v) = sim.post(S, body).await;
    assert_error(st, &v, 400);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("image_id")), "{v}");
    let mut body = create_body("m");
    body["cores"] = json!("many");
    let (st, v) = sim.post(S, body).await;
    assert_error(st, &v, 400);
    let mut body = create_body("m");
    body["networks"][0]["ip_info"] = json!({"ip_address": "192.168.99.9"});
    let (st, v) = sim.post(S, body).await;
    assert_error(st, &v, 400);
    let (st, v) = sim.get(&format!("{S}/no-such-id")).await;
    assert_error(st, &v, 404);
    let (st, v) = sim.get("/janus/20180725/tasks/no-such-task").await;
    assert_error(st, &v, 404);
    let (st, v) = sim.get("/janus/20180725/nothing-here").await;
    assert_error(st, &v, 404);
    let (st, v) = sim.call(Method::PATCH, S, None).await;
    assert_error(st, &v, 405);
    let r = post_raw(vec![b' '; 10_000]).send().await.expect("oversized");
    let st = r.status().as_u16();
    let v: Value = r.json().await.expect("json");
    assert_error(st, &v, 413);
    // After all that the simulator still serves.
    assert_eq!(sim.data(Method::GET, S, None).await["total_size"], 0);
    sim.stop().await;
}

#[actix_web::test]
async fn version_aliases_and_catalogue() {
    let sim = Sim::start().await;
    let id = sim.running_vm("alias-1").await;
    for v in ["20180725", "20190725", "20200725", "20210725", "20240725"] {
        let d = sim.data(Method::GET, &format!("/janus/{v}/servers/{id}"), None).await;
        assert_eq!(d["id"], id.as_str(), "{v}");
    }
    let d = sim.data(Method::GET, &format!("/janus/20240725/servers/{id}"), None).await;
    assert_eq!(d["advance_param"]["cpu_type"], "host");
    let azs = sim.data(Method::GET, "/janus/20180725/azs", None).await;
    assert_eq!(azs.as_array().map(Vec::len), Some(2));
    let az = sim.data(Method::GET, &format!("/janus/20180725/azs/{AZ_A}"), None).await;
    let cpu =
        az["virtual_resources"].as_array().and_then(|r| r.iter().find(|x| x["name"] == "CPU")).cloned().expect("CPU");
    assert_eq!(cpu["allocated"], 2);
    let tags = sim.data(Method::GET, &format!("/janus/20180725/storages/tags?az_id={AZ_A}"), None).await;
    assert_eq!(tags.as_array().map(Vec::len), Some(2));
    let images = sim.data(Method::GET, "/janus/20180725/images?disk_format=ISO", None).await;
    assert_eq!(images["total_size"], 1);
    let vpcs = sim.data(Method::GET, &format!("/janus/20180725/vpcs?az_id={AZ_A}"), None).await;
    let vpc = vpcs["data"][0]["id"].as_str().expect("vpc").to_string();
    let subnets = sim.data(Method::GET, &format!("/janus/20180725/subnets?vpc_id={vpc}"), None).await;
    assert_eq!(subnets["total_size"], 2);
    assert_eq!(sim.data(Method::GET, "/janus/20180725/floatingips", None).await["total_size"], 3);
    assert_eq!(sim.data(Method::GET, "/janus/20180725/projects", None).await["total_size"], 2);
    assert_eq!(sim.data(Method::GET, "/janus/20190725/hosts", None).await["total_size"], 4);
    let v = sim.data(Method::GET, "/janus/20180725/system/version", None).await;
    assert!(v["build_version"].as_str().is_some_and(|b| b.starts_with("SCP")));
    let tasks = sim.data(Method::GET, "/janus/20180725/tasks?status=finish", None).await;
    assert_eq!(tasks["total_size"], 1);
    let o = sim.data(Method::GET, "/janus/20180725/overview", None).await;
    assert_eq!(o["server"]["running_count"], 1);
    sim.stop().await;
}

#[actix_web::test]
async fn rate_limits_answer_429_in_the_envelope() {
    let sim = Sim::start_with(|c| {
        c.get_per_minute = 3;
        c.write_per_minute = 1;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(sim.get("/janus/20180725/azs").await.0, 200);
    }
    let r = sim
        .http
        .get(format!("{}/janus/20180725/azs", sim.base))
        .header("Authorization", format!("Token {}", sim.token))
        .send()
        .await
        .expect("limited");
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 =
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!(retry >= 1);
    let v: Value = r.json().await.expect("json");
    assert_error(429, &v, 429);
    // Writes have their own budget.
    assert_eq!(sim.post(S, create_body("rl-1")).await.0, 200);
    assert_eq!(sim.post(S, create_body("rl-2")).await.0, 429);
    // Turned off at run time.
    let (st, _) = sim.control(Method::PUT, "/_sim/config", Some(json!({"get_per_minute": 0}))).await;
    assert_eq!(st, 200);
    for _ in 0..10 {
        assert_eq!(sim.get("/janus/20180725/azs").await.0, 200);
    }
    sim.stop().await;
}

#[actix_web::test]
async fn state_file_keeps_servers_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sim-state.json");
    let path = file.clone();
    let sim = Sim::start_with(move |c| c.state_file = Some(path)).await;
    let id = sim.running_vm("persist-1").await;
    sim.stop().await;
    assert!(file.exists(), "state written on stop");
    let path = file.clone();
    let sim = Sim::start_with(move |c| c.state_file = Some(path)).await;
    let s = sim.data(Method::GET, &format!("{S}/{id}"), None).await;
    assert_eq!((s["name"].as_str(), s["status"].as_str()), (Some("persist-1"), Some("running")));
    sim.stop().await;
    // A corrupt file is refused at start rather than silently replaced.
    std::fs::write(&file, b"{broken").expect("write");
    let config = vmauto::sim::SimConfig { state_file: Some(file), ..Default::default() };
    assert!(vmauto::sim::start(config).await.is_err());
}

#[actix_web::test]
async fn https_with_the_generated_certificate() {
    vmauto::init_crypto();
    let config = vmauto::sim::SimConfig { https: true, ..Default::default() };
    let server = vmauto::sim::start(config).await.expect("https simulator");
    assert!(server.base_url().starts_with("https://"));
    let pem = server.cert_pem().expect("certificate");
    let tls = super::trusting(&pem);
    let http = reqwest::Client::builder().use_preconfigured_tls(tls).build().expect("client");
    let url = format!("https://localhost:{}/janus/v2/public-key", server.addr().port());
    let v: Value = http.get(url).send().await.expect("https request").json().await.expect("json");
    assert!(v["data"]["public_key"].as_str().is_some_and(|k| k.len() >= 256), "{v}");
    let (status, body) =
        super::login(&http, &format!("https://localhost:{}", server.addr().port()), "admin", server.password()).await;
    assert_eq!(status, 200, "{body}");
    // A client that trusts nothing is refused by TLS, not answered.
    let strict = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
        .build()
        .expect("client");
    assert!(strict.get(server.base_url()).send().await.is_err());
    server.stop().await;
}

#[actix_web::test]
async fn garbage_bodies_never_break_the_simulator() {
    let sim = Sim::start().await;
    let id = sim.running_vm("robust-1").await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<String> = vec![
        "null".into(),
        "[]".into(),
        "\"text\"".into(),
        "42".into(),
        "{\"cores\": -1, \"memory_mb\": 1e308, \"name\": 7}".into(),
        "{\"size_mb\": 18446744073709551615, \"force\": \"yes\", \"action\": 3}".into(),
        "{\"disks\": [{\"size_mb\": 18446744073709551615}], \"networks\": {}}".into(),
        "{\"password\": \"zz\", \"remote_console\": 5, \"compute_location\": []}".into(),
        "{\"server_ids\": [1, null], \"server_action\": []}".into(),
        deep,
        "\u{0}\u{1}binary".into(),
    ];
    let paths = [
        ("POST", S.to_string()),
        ("POST", format!("{S}/action")),
        ("PUT", format!("{S}/{id}")),
        ("DELETE", format!("{S}/no-such")),
        ("POST", format!("{S}/{id}/action")),
        ("POST", format!("{S}/{id}/clone")),
        ("POST", format!("{S}/{id}/remote-consoles")),
        ("POST", format!("{S}/{id}/server-password")),
        ("POST", format!("{S}/{id}/migrate")),
        ("POST", "/janus/20180725/volumes".to_string()),
        ("PUT", "/janus/20180725/volumes/none".to_string()),
        ("POST", "/janus/authenticate".to_string()),
    ];
    for (method, path) in &paths {
        for body in &bodies {
            let r = sim
                .http
                .request(method.parse().expect("method"), format!("{}{path}", sim.base))
                .header("Authorization", format!("Token {}", sim.token))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("answered");
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            // Some of these are valid requests (unknown fields are ignored, as SCP does); none
            // may be a server error, and every answer is an envelope.
            assert!(status < 500, "{method} {path} {body:.60}: {status} {v}");
            if status < 300 {
                assert_eq!(v["code"], 0, "{method} {path}: {v}");
            } else {
                assert!(status >= 400 && v["message"].is_string(), "{method} {path}: {status} {v}");
            }
        }
    }
    sim.server_until(&id, "running and idle", |s| s["status"] == "running").await;
    assert_eq!(sim.data(Method::GET, S, None).await["total_size"], 1, "garbage created nothing");
    sim.stop().await;
}

#[actix_web::test]
async fn errcode_envelope_and_seeded_ids() {
    let sim = Sim::start_with(|c| {
        c.envelope = vmauto::sim::Envelope::Errcode;
        c.seed = Some(42);
    })
    .await;
    let (st, v) = sim.get("/janus/20180725/azs").await;
    assert_eq!(st, 200);
    assert_eq!(v["errcode"], "");
    assert!(v.get("code").is_none(), "{v}");
    let (st, v) = sim.get("/janus/20180725/servers/none").await;
    assert_eq!(st, 404);
    assert!(v["errcode"].as_str().is_some_and(|c| c.starts_with("0x")) && v.get("code").is_none(), "{v}");
    let (st, v) = sim.post(S, create_body("seeded")).await;
    assert_eq!(st, 200, "{v}");
    let first = v["data"]["uuids"][0].clone();
    sim.stop().await;
    // The same seed gives the same ids.
    let again = Sim::start_with(|c| c.seed = Some(42)).await;
    let d = again.data(Method::POST, S, Some(create_body("seeded"))).await;
    assert_eq!(d["uuids"][0], first);
    again.stop().await;
}

#[actix_web::test]
async fn dropped_connection_over_https() {
    vmauto::init_crypto();
    let config = vmauto::sim::SimConfig { https: true, ..Default::default() };
    let sim = Sim::from_config(config).await;
    let (st, _) = sim
        .control(Method::POST, "/_sim/faults", Some(json!({"path": "/janus/*/azs", "drop_rate": 1.0, "times": 1})))
        .await;
    assert_eq!(st, 200);
    let err = sim
        .http
        .get(format!("{}/janus/20180725/azs", sim.base))
        .header("Authorization", format!("Token {}", sim.token))
        .send()
        .await
        .expect_err("closed without an answer");
    assert!(!err.is_status(), "{err:?}");
    assert_eq!(sim.get("/janus/20180725/azs").await.0, 200);
    sim.stop().await;
}

/// `capacity_factor` multiplies a fresh world's pools; a world read back from a state file
/// keeps what it had.
#[actix_web::test]
async fn the_capacity_factor_multiplies_a_fresh_world_only() {
    vmauto::init_crypto();
    let cpu_total = |snapshot: Value| {
        snapshot["azs"]
            .as_array()
            .and_then(|azs| azs.iter().find(|a| a["id"] == AZ_A))
            .map(|a| a["virtual_resources"][0]["total"].as_u64().expect("CPU total"))
            .expect("AZ A")
    };
    let plain = vmauto::sim::start(vmauto::sim::SimConfig::default()).await.expect("sim");
    let base = cpu_total(plain.snapshot());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |f| vmauto::sim::SimConfig {
        capacity_factor: f,
        state_file: Some(dir.path().join("world.json")),
        ..vmauto::sim::SimConfig::default()
    };
    let grown = vmauto::sim::start(config(4)).await.expect("sim");
    assert_eq!(cpu_total(grown.snapshot()), base * 4);
    grown.stop().await;
    let again = vmauto::sim::start(config(4)).await.expect("sim");
    assert_eq!(cpu_total(again.snapshot()), base * 4, "a saved world is not multiplied again");
}
