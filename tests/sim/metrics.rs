//! `GET /metrics/{object_id}`: series that follow the power state, as strings in local time,
//! and the validation errors the doc describes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Sim, assert_error};

const S: &str = "/janus/20180725/servers";

fn path(id: &str, query: &str) -> String {
    format!("/janus/20180725/metrics/{id}?{query}")
}

/// The values of one metric's points, checking their shape on the way.
fn values(data: &Value, metric: &str) -> Vec<f64> {
    let points = data[metric]["datapoints"].as_array().unwrap_or_else(|| panic!("{metric} in {data}"));
    points
        .iter()
        .map(|p| {
            let at = p[0].as_str().expect("time string");
            assert!(chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").is_ok(), "local time {at:?}");
            p[1].as_str().expect("values are strings").parse::<f64>().expect("a number")
        })
        .collect()
}

const ALL: &str = "cpu.util,memory.util,net.in.bps,net.out.bps";

#[actix_web::test]
async fn series_follow_the_power_state() {
    let sim = Sim::start().await;
    let running = sim.running_vm("metrics-on").await;
    let (stopped, task) = sim.create("metrics-off", json!({"power_on": 0})).await;
    sim.finish(&task).await;

    let q = format!("object_type=server&metric_names={ALL}&timegap=1h&granularity=60");
    let on = sim.data(Method::GET, &path(&running, &q), None).await;
    assert_eq!((on["cpu.util"]["unit"].as_str(), on["cpu.util"]["granularity"].as_u64()), (Some("%"), Some(60)));
    assert_eq!(on["net.in.bps"]["unit"], "bps");
    for metric in ALL.split(',') {
        let v = values(&on, metric);
        assert!(v.last().is_some_and(|x| *x > 0.0), "{metric} of a running server: {v:?}");
    }
    let off = sim.data(Method::GET, &path(&stopped, &q), None).await;
    for metric in ALL.split(',') {
        let v = values(&off, metric);
        assert!(!v.is_empty() && v.iter().all(|x| *x == 0.0), "{metric} of a stopped server: {v:?}");
    }

    // Stopping shows at once in the newest point.
    let t = sim.data(Method::POST, &format!("{S}/{running}/stop"), Some(json!({"force": 1}))).await;
    sim.finish(t["task_id"].as_str().expect("task")).await;
    let after = sim.data(Method::GET, &path(&running, &q), None).await;
    assert_eq!(values(&after, "cpu.util").last(), Some(&0.0), "{after}");

    // Asked the same question (a fixed stop_time), the answer is the same.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stop = chrono::Utc::now().format("%Y-%m-%d%%20%H:%M:%S");
    let fixed = format!("{q}&stop_time={stop}");
    let a = sim.data(Method::GET, &path(&running, &fixed), None).await;
    let b = sim.data(Method::GET, &path(&running, &fixed), None).await;
    assert_eq!(a, b);
    assert!(!values(&a, "cpu.util").is_empty());

    // A day at the finest granularity SCP allows for it; asking finer is raised to it.
    let day = sim
        .data(Method::GET, &path(&stopped, "object_type=server&metric_names=cpu.util&timegap=24h&granularity=10"), None)
        .await;
    assert_eq!(day["cpu.util"]["granularity"], 300);
    let week =
        sim.data(Method::GET, &path(&stopped, "object_type=server&metric_names=io.read.iops&timegap=7d"), None).await;
    assert_eq!(
        (week["io.read.iops"]["granularity"].as_u64(), week["io.read.iops"]["unit"].as_str()),
        (Some(1800), Some("iops"))
    );
    sim.stop().await;
}

#[actix_web::test]
async fn metrics_queries_are_validated_as_scp_does() {
    let sim = Sim::start().await;
    let id = sim.running_vm("metrics-checks").await;
    let ok = "object_type=server&metric_names=cpu.util&timegap=1h";
    let cases: [(String, u16); 10] = [
        (path(&id, "object_type=vm&metric_names=cpu.util&timegap=1h"), 400),
        (path(&id, "metric_names=cpu.util&timegap=1h"), 400),
        (path(&id, "object_type=server&metric_names=cpu.util&timegap=3600"), 404),
        (path(&id, "object_type=server&metric_names=cpu.util&timegap=30m"), 400),
        (path(&id, "object_type=server&metric_names=disk.util&timegap=1h"), 400),
        (path(&id, "object_type=server&timegap=1h"), 400),
        (path(&id, &format!("{ok}&granularity=often")), 400),
        (path(&id, &format!("{ok}&stop_time=yesterday")), 400),
        (path(&id, "object_type=host&metric_names=cpu.util&timegap=1h"), 400),
        (path("no-such-server", ok), 404),
    ];
    for (p, expected) in &cases {
        let (status, body) = sim.get(p).await;
        assert_error(status, &body, *expected);
    }
    // Without authentication, like every API.
    let anonymous = sim.http.get(format!("{}{}", sim.base, path(&id, ok))).send().await.expect("answered");
    assert_eq!(anonymous.status().as_u16(), 401);
    sim.stop().await;
}
