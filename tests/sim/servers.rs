//! The server lifecycle: every action and its task, IPs after boot, recycle bin, capacity.

use reqwest::Method;
use serde_json::{Value, json};
use vmauto::sim::world::{AZ_B, IMG_UBUNTU, SUBNET_B1, TAG_B_SSD, VPC_B};

use super::{Sim, assert_error, encrypt};

const S: &str = "/janus/20180725/servers";

async fn act(sim: &Sim, id: &str, op: &str, body: Value) -> String {
    let d = sim.data(Method::POST, &format!("{S}/{id}/{op}"), Some(body)).await;
    d["task_id"].as_str().expect("task_id").to_string()
}

#[actix_web::test]
async fn full_lifecycle_of_a_server() {
    // Tasks long enough that the transient states below are still visible on a loaded machine.
    let sim = Sim::start_with(|c| c.task_ms = 400).await;
    let (id, task) = sim.create("web-1", json!({"description": "vmauto:sub=sub_123"})).await;
    // The task is readable at once and starts queued or running; the VM exists, creating.
    let t = sim.data(Method::GET, &format!("/janus/20180725/tasks/{task}"), None).await;
    assert!(["waiting", "doing"].contains(&t["status"].as_str().unwrap_or("")), "{t}");
    let s = sim.data(Method::GET, &format!("{S}/{id}"), None).await;
    assert_eq!(s["status"], "creating");
    assert_eq!(s["networks"][0]["ip_address"], "");
    let t = sim.finish(&task).await;
    assert_eq!(t["object_id"], id.as_str());
    // Running, then vmtools reports the address from the subnet a little later.
    let s = sim.server_until(&id, "an IP", |s| s["networks"][0]["ip_address"] != "").await;
    assert_eq!(s["status"], "running");
    assert_eq!(s["power_state"], "on");
    let ip = s["networks"][0]["ip_address"].as_str().expect("ip").to_string();
    assert!(ip.starts_with("10.10.1."), "{ip}");
    assert_eq!(s["ips"], json!([ip]));
    assert_eq!(s["description"], "vmauto:sub=sub_123");
    // The description filter finds the VM a client tagged.
    let l = sim.data(Method::GET, &format!("{S}?description=sub_123"), None).await;
    assert_eq!(l["total_size"], 1);
    let l = sim.data(Method::GET, &format!("{S}?keywords={ip}"), None).await;
    assert_eq!(l["data"][0]["id"], id.as_str());
    for (q, n) in [("status=running", 1), ("status=stopped", 0), ("name=WEB", 1), ("name=db", 0)] {
        let l = sim.data(Method::GET, &format!("{S}?{q}"), None).await;
        assert_eq!(l["total_size"], n, "{q}");
    }
    let host = s["host_id"].as_str().expect("host_id").to_string();
    let l =
        sim.data(Method::GET, &format!("{S}?host_id={host}&az_id={}", s["az_id"].as_str().unwrap_or("")), None).await;
    assert_eq!(l["total_size"], 1);

    // Soft stop: IP gone, stopped.
    let t = act(&sim, &id, "stop", json!({})).await;
    assert_eq!(sim.data(Method::GET, &format!("{S}/{id}"), None).await["status"], "stopping");
    sim.finish(&t).await;
    let s = sim.data(Method::GET, &format!("{S}/{id}"), None).await;
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["power_state"], "off");
    assert_eq!(s["networks"][0]["ip_address"], "");
    assert_eq!(s["ips"], json!([]));
    // Start, and the same address comes back.
    sim.finish(&act(&sim, &id, "start", json!({})).await).await;
    let s = sim.server_until(&id, "its IP again", |s| s["networks"][0]["ip_address"] == ip.as_str()).await;
    assert_eq!(s["status"], "running");
    // Reboot (forced), suspend, resume via /action.
    sim.finish(&act(&sim, &id, "reboot", json!({"force": 1})).await).await;
    assert_eq!(sim.data(Method::GET, &format!("{S}/{id}"), None).await["status"], "running");
    sim.finish(&act(&sim, &id, "suspend", json!({})).await).await;
    let s = sim.data(Method::GET, &format!("{S}/{id}"), None).await;
    assert_eq!(s["status"], "suspended");
    assert_eq!(s["networks"][0]["ip_address"], "");
    let (st, v) = sim.post(&format!("{S}/{id}/reboot"), json!({})).await;
    assert_error(st, &v, 400);
    sim.finish(&act(&sim, &id, "action", json!({"action": "resume"})).await).await;
    assert_eq!(sim.data(Method::GET, &format!("{S}/{id}"), None).await["status"], "running");
    // Resize.
    let d = sim
        .data(Method::PUT, &format!("{S}/{id}"), Some(json!({"cores": 4, "memory_mb": 4096, "name": "web-1b"})))
        .await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let s = sim.data(Method::GET, &format!("{S}/{id}"), None).await;
    assert_eq!(
        (s["cores"].as_u64(), s["memory_mb"].as_u64(), s["name"].as_str()),
        (Some(4), Some(4096), Some("web-1b"))
    );
    // Password (RSA-encrypted with the platform key) and console.
    let cipher = encrypt(&sim.http, &sim.base, "N3w-Passw0rd!").await;
    sim.finish(&act(&sim, &id, "server-password", json!({"password": cipher})).await).await;
    let (st, v) = sim.post(&format!("{S}/{id}/server-password"), json!({"password": "zz"})).await;
    assert_error(st, &v, 400);
    let c = sim
        .data(
            Method::POST,
            &format!("{S}/{id}/remote-consoles"),
            Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
        )
        .await;
    assert!(c["url"].as_str().is_some_and(|u| u.starts_with(&sim.base) && u.contains(&id)), "{c}");
    // Forced stop, then the recycle bin.
    sim.finish(&act(&sim, &id, "stop", json!({"force": 1})).await).await;
    let d = sim.data(Method::DELETE, &format!("{S}/{id}"), Some(json!({"force": 0}))).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let (st, v) = sim.get(&format!("{S}/{id}")).await;
    assert_error(st, &v, 404);
    assert_eq!(sim.data(Method::GET, S, None).await["total_size"], 0);
    let state = sim.state().await;
    assert_eq!(state["counts"]["recycled"], 1);
    assert_eq!(state["servers"][0]["recycled"], true);
    // Restore brings it back, powered off.
    sim.finish(&act(&sim, &id, "restore", json!({})).await).await;
    assert_eq!(sim.data(Method::GET, &format!("{S}/{id}"), None).await["status"], "stopped");
    let (st, v) = sim.post(&format!("{S}/{id}/restore"), json!({})).await;
    assert_error(st, &v, 400);
    // Permanent delete: gone from everywhere.
    let d = sim.data(Method::DELETE, &format!("{S}/{id}"), Some(json!({"force": 1}))).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let state = sim.state().await;
    assert_eq!(state["counts"]["servers"], 0);
    assert_eq!(state["counts"]["recycled"], 0);
    assert!(state["counts"]["tasks_finished"].as_u64().is_some_and(|n| n >= 12), "{}", state["counts"]);
    let (st, v) = sim.post(&format!("{S}/{id}/restore"), json!({})).await;
    assert_error(st, &v, 404);
    sim.stop().await;
}

#[actix_web::test]
async fn busy_servers_batch_actions_clone_and_volumes() {
    let sim = Sim::start_with(|c| c.task_ms = 400).await;
    let (id, task) = sim.create("app-1", json!({"power_on": 0})).await;
    // Busy while its create task runs.
    let (st, v) = sim.post(&format!("{S}/{id}/start"), json!({})).await;
    assert_error(st, &v, 409);
    sim.finish(&task).await;
    assert_eq!(sim.data(Method::GET, &format!("{S}/{id}"), None).await["status"], "stopped");
    // Batch start answers 204 and starts the VM.
    let r = sim
        .http
        .post(format!("{}{S}/action", sim.base))
        .header("Authorization", format!("Token {}", sim.token))
        .json(&json!({"server_ids": [id], "server_action": {"start_servers_action": ""}}))
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status().as_u16(), 204);
    sim.server_until(&id, "running", |s| s["status"] == "running").await;
    // Clone (v2 path): a new VM with its own address.
    let d = sim
        .data(
            Method::POST,
            &format!("/janus/20190725/servers/{id}/clone"),
            Some(json!({"name": "app-2", "power_on": 1, "advance_param": {"return_uuids": 1}})),
        )
        .await;
    let clone_id = d["uuids"][0].as_str().expect("clone uuid").to_string();
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let a = sim.server_until(&id, "ip", |s| s["ips"][0].is_string()).await;
    let b = sim.server_until(&clone_id, "ip", |s| s["ips"][0].is_string()).await;
    assert_ne!(a["ips"][0], b["ips"][0]);
    assert_eq!(b["name"], "app-2");
    // A volume: create, attach, resize, detach, delete.
    let d = sim
        .data(
            Method::POST,
            "/janus/20180725/volumes",
            Some(
                json!({"az_id": a["az_id"], "storage_tag_id": a["storage_tag_id"], "size_mb": 10240, "name": "data-1"}),
            ),
        )
        .await;
    let vol = d["volume_id"].as_str().expect("volume id").to_string();
    sim.finish(d["task_id"].as_str().expect("task")).await;
    assert_eq!(sim.data(Method::GET, &format!("/janus/20180725/volumes/{vol}"), None).await["status"], "available");
    let t = act(&sim, &id, "action", json!({"action": "attach_volume", "volume_id": vol})).await;
    sim.finish(&t).await;
    let s = sim.data(Method::GET, &format!("{S}/{id}"), None).await;
    assert!(s["disks"].as_array().is_some_and(|d| d.iter().any(|d| d["volume_id"] == vol.as_str())), "{s}");
    let d = sim.data(Method::PUT, &format!("/janus/20180725/volumes/{vol}"), Some(json!({"size_mb": 20480}))).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let v = sim.data(Method::GET, &format!("/janus/20180725/volumes/{vol}"), None).await;
    assert_eq!((v["size_mb"].as_u64(), v["status"].as_str()), (Some(20480), Some("in-use")));
    let (st, e) = sim.call(Method::PUT, &format!("/janus/20180725/volumes/{vol}"), Some(json!({"size_mb": 1}))).await;
    assert_error(st, &e, 400);
    let (st, e) = sim.call(Method::DELETE, &format!("/janus/20180725/volumes/{vol}"), None).await;
    assert_error(st, &e, 400);
    sim.finish(&act(&sim, &id, "action", json!({"action": "detach_volume", "volume_id": vol})).await).await;
    let d = sim.data(Method::DELETE, &format!("/janus/20180725/volumes/{vol}"), None).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let (st, e) = sim.get(&format!("/janus/20180725/volumes/{vol}")).await;
    assert_error(st, &e, 404);
    sim.stop().await;
}

fn pool_b(name: &str, memory_mb: u64) -> Value {
    json!({
        "az_id": AZ_B, "image_id": IMG_UBUNTU, "storage_tag_id": TAG_B_SSD, "cores": 4, "sockets": 1,
        "memory_mb": memory_mb, "count": 1, "name": name, "description": "", "power_on": 1,
        "networks": [{"vif_id": "net0", "vpc_id": VPC_B, "subnet_id": SUBNET_B1, "connect": 1}],
    })
}

async fn memory_used(sim: &Sim) -> (u64, u64) {
    let az = sim.data(Method::GET, &format!("/janus/20180725/azs/{AZ_B}"), None).await;
    let mem = az["physical_resources"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["name"] == "memory"))
        .cloned()
        .expect("memory");
    (mem["used"].as_u64().expect("used"), mem["total"].as_u64().expect("total"))
}

#[actix_web::test]
async fn capacity_is_consumed_returned_and_exhaustion_fails_the_task() {
    let sim = Sim::start().await;
    let (used0, total) = memory_used(&sim).await;
    assert_eq!(used0, 0);
    assert_eq!(total, 65_536);
    let d = sim.data(Method::POST, S, Some(pool_b("big-1", 49_152))).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let first = d["uuids"][0].as_str().expect("uuid").to_string();
    assert_eq!(memory_used(&sim).await.0, 49_152);
    let o = sim.data(Method::GET, &format!("/janus/20180725/overview?az_id={AZ_B}"), None).await;
    let mem = o["virtual_resources"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["name"] == "Memory"))
        .cloned()
        .expect("Memory");
    assert_eq!((mem["allocated"].as_u64(), mem["total"].as_u64()), (Some(49_152), Some(65_536)));
    assert_eq!(o["server"]["total"], 1);
    // The second does not fit: the request is accepted, its task fails like SCP's would.
    let d = sim.data(Method::POST, S, Some(pool_b("big-2", 32_768))).await;
    let second = d["uuids"][0].as_str().expect("uuid").to_string();
    let t = sim.wait_task(d["task_id"].as_str().expect("task")).await;
    assert_eq!(t["status"], "failure");
    assert_eq!(t["progress"], -1);
    assert!(t["description"].as_str().is_some_and(|m| m.contains("Insufficient memory")), "{t}");
    let (st, v) = sim.get(&format!("{S}/{second}")).await;
    assert_error(st, &v, 404);
    assert_eq!(memory_used(&sim).await.0, 49_152);
    // A permanent delete returns the capacity, and the same create now succeeds.
    let d = sim.data(Method::DELETE, &format!("{S}/{first}"), Some(json!({"force": 1}))).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    assert_eq!(memory_used(&sim).await.0, 0);
    let d = sim.data(Method::POST, S, Some(pool_b("big-2", 32_768))).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    sim.stop().await;
}
