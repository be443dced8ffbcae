//! The SCP operations the appliance needs, as the [`Provider`] implementation.
//!
//! Each mutating call carries `X-Client-Token` derived from the caller's [`OpKey`] and the
//! action, so a retry (by the traffic layer) or a resumed operation (after a crash) replays
//! the same request instead of doing the work twice.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::{API, Call, SangforClient, envelope, wire};
use crate::config::Secret;
use crate::provider::{
    Capacity, ConsoleUrl, Created, Image, Network, OpKey, Provider, ProviderError, ProviderResult, Server, ServerId,
    ServerMetrics, ServerSpec, StorageTag, Subnet, TaskId, TaskState, TimeGap, Zone,
};

/// Path segment for an id: refuses ids that would change the path.
fn seg(id: &str) -> ProviderResult<&str> {
    if id.is_empty() || id.contains(['/', '?', '#', '%']) || id == "." || id == ".." {
        return Err(ProviderError::BadRequest { message: format!("invalid id {id:?}"), code: String::new() });
    }
    Ok(id)
}

/// The `task_id` of an answer that starts a task.
fn task_of(op: &str, data: &Value) -> ProviderResult<TaskId> {
    let id = envelope::field(data, "task_id");
    if id.is_empty() {
        return Err(ProviderError::Protocol(format!("{op}: the answer has no task_id")));
    }
    Ok(TaskId(id))
}

/// The create body (sangfor-scp-api.md §5.1.1).
pub fn create_body(spec: &ServerSpec) -> Value {
    let networks: Vec<Value> = spec
        .nics
        .iter()
        .enumerate()
        .map(|(i, nic)| {
            let mut n = json!({
                "vif_id": format!("net{i}"),
                "vpc_id": nic.network_id,
                "subnet_id": nic.subnet_id,
                "connect": 1,
                "model": "virtio",
            });
            if let Some(ip) = &nic.ip {
                n["ip_info"] = json!({"ip_address": ip});
            }
            n
        })
        .collect();
    let mut body = json!({
        "az_id": spec.zone_id,
        "image_id": spec.image_id,
        "storage_tag_id": spec.storage_tag_id,
        "cores": spec.cores,
        "sockets": spec.sockets.max(1),
        "memory_mb": spec.memory_mb,
        "count": 1,
        "name": spec.name,
        "description": spec.owner_tag,
        "networks": networks,
        "power_on": u8::from(spec.power_on),
        "location": {"id": "cluster"},
    });
    if let Some(hostname) = &spec.hostname {
        body["hostname"] = json!(hostname);
    }
    if let Some(size_mb) = spec.disk_mb {
        body["disks"] = json!([{"id": "ide0", "type": "derive_disk", "size_mb": size_mb, "preallocate": "off"}]);
    }
    body
}

impl SangforClient {
    async fn server_raw(&self, id: &ServerId) -> ProviderResult<Value> {
        self.call(Call::get("get_server", format!("{API}/servers/{}", seg(id.as_str())?))).await
    }

    async fn server_action(
        &self,
        op: &'static str,
        id: &ServerId,
        action: &str,
        body: Value,
        key: &OpKey,
    ) -> ProviderResult<TaskId> {
        let path = format!("{API}/servers/{}/{action}", seg(id.as_str())?);
        let data = self.call(Call::write(op, Method::POST, path, &body, Some(key.token(op)))).await?;
        task_of(op, &data)
    }

    async fn list_items(&self, call: Call) -> ProviderResult<Vec<Value>> {
        Ok(envelope::page(self.call(call).await?)?.items)
    }
}

#[async_trait]
impl Provider for SangforClient {
    fn name(&self) -> &'static str {
        "sangfor"
    }

    async fn version(&self) -> ProviderResult<String> {
        let data = self.call(Call::get("version", format!("{API}/system/version"))).await?;
        let v = envelope::field(&data, "build_version");
        Ok(if v.is_empty() { envelope::field(&data, "version") } else { v })
    }

    async fn list_zones(&self) -> ProviderResult<Vec<Zone>> {
        let items = self.list_items(Call::get("list_azs", format!("{API}/azs"))).await?;
        Ok(items.iter().map(wire::zone).collect())
    }

    async fn zone_capacity(&self, zone_id: Option<&str>) -> ProviderResult<Capacity> {
        let mut call = Call::get("overview", format!("{API}/overview"));
        if let Some(z) = zone_id {
            call = call.query("az_id", z);
        }
        Ok(wire::capacity(&self.call(call).await?))
    }

    async fn list_storage_tags(&self, zone_id: &str) -> ProviderResult<Vec<StorageTag>> {
        let call = Call::get("list_storage_tags", format!("{API}/storages/tags")).query("az_id", zone_id);
        Ok(self.list_items(call).await?.iter().map(wire::storage_tag).collect())
    }

    async fn list_images(&self, zone_id: Option<&str>) -> ProviderResult<Vec<Image>> {
        let mut call = Call::get("list_images", format!("{API}/images"));
        if let Some(z) = zone_id {
            call = call.query("az_id", z);
        }
        Ok(self.list_all(call).await?.iter().map(wire::image).collect())
    }

    async fn list_networks(&self, zone_id: Option<&str>) -> ProviderResult<Vec<Network>> {
        let mut call = Call::get("list_vpcs", format!("{API}/vpcs"));
        if let Some(z) = zone_id {
            call = call.query("az_id", z);
        }
        Ok(self.list_all(call).await?.iter().map(wire::network).collect())
    }

    async fn list_subnets(&self, network_id: &str) -> ProviderResult<Vec<Subnet>> {
        let call = Call::get("list_subnets", format!("{API}/subnets")).query("vpc_id", network_id);
        Ok(self.list_all(call).await?.iter().map(wire::subnet).collect())
    }

    async fn create_server(&self, spec: &ServerSpec, op: &OpKey) -> ProviderResult<Created> {
        if spec.owner_tag.trim().is_empty() || spec.owner_tag.contains(char::is_whitespace) {
            return Err(ProviderError::BadRequest {
                message: "a server needs a one-word ownership tag".into(),
                code: String::new(),
            });
        }
        let call = Call::write(
            "create_server",
            Method::POST,
            format!("{API}/servers"),
            &create_body(spec),
            Some(op.token("create_server")),
        );
        let data = self.call(call).await?;
        let server_id = data
            .get("uuids")
            .and_then(Value::as_array)
            .and_then(|u| u.first())
            .map(envelope::text)
            .or_else(|| data.get("uuid").map(envelope::text))
            .filter(|s| !s.is_empty())
            .map(ServerId);
        Ok(Created { server_id, task_id: task_of("create_server", &data)? })
    }

    async fn get_server(&self, id: &ServerId) -> ProviderResult<Server> {
        Ok(wire::server(&self.server_raw(id).await?))
    }

    async fn find_servers_by_tag(&self, tag: &str) -> ProviderResult<Vec<Server>> {
        // `description` narrows the listing where SCP supports it; the whole-word match below
        // is what decides, so a platform that ignores the filter only costs more pages.
        let call = Call::get("list_servers", format!("{API}/servers")).query("description", tag);
        let items = self.list_all(call).await?;
        Ok(items.iter().map(wire::server).filter(|s| s.has_tag(tag)).collect())
    }

    async fn find_servers_by_tag_prefix(&self, prefix: &str) -> ProviderResult<Vec<Server>> {
        let call = Call::get("list_servers", format!("{API}/servers")).query("description", prefix);
        let items = self.list_all(call).await?;
        Ok(items.iter().map(wire::server).filter(|s| s.tag_with_prefix(prefix).is_some()).collect())
    }

    async fn start(&self, id: &ServerId, op: &OpKey) -> ProviderResult<TaskId> {
        self.server_action("start_server", id, "start", json!({}), op).await
    }

    async fn stop(&self, id: &ServerId, force: bool, op: &OpKey) -> ProviderResult<TaskId> {
        let body = if force { json!({"force": 1}) } else { json!({}) };
        let name = if force { "force_stop_server" } else { "stop_server" };
        self.server_action(name, id, "stop", body, op).await
    }

    async fn reboot(&self, id: &ServerId, force: bool, op: &OpKey) -> ProviderResult<TaskId> {
        let body = if force { json!({"force": 1}) } else { json!({}) };
        self.server_action("reboot_server", id, "reboot", body, op).await
    }

    async fn update_compute(
        &self,
        id: &ServerId,
        cores: Option<u32>,
        memory_mb: Option<u64>,
        op: &OpKey,
    ) -> ProviderResult<TaskId> {
        let mut body = json!({});
        if let Some(c) = cores {
            body["cores"] = json!(c);
        }
        if let Some(m) = memory_mb {
            body["memory_mb"] = json!(m);
        }
        if body.as_object().is_some_and(serde_json::Map::is_empty) {
            return Err(ProviderError::BadRequest { message: "nothing to update".into(), code: String::new() });
        }
        let path = format!("{API}/servers/{}", seg(id.as_str())?);
        let data =
            self.call(Call::write("update_server", Method::PUT, path, &body, Some(op.token("update_server")))).await?;
        task_of("update_server", &data)
    }

    async fn resize_disk(&self, id: &ServerId, size_mb: u64, op: &OpKey) -> ProviderResult<TaskId> {
        // SCP replaces the whole disk list on update, so send every disk back unchanged
        // except the system disk's size.
        let raw = self.server_raw(id).await?;
        let mut disks = raw.get("disks").and_then(Value::as_array).cloned().unwrap_or_default();
        let index = disks
            .iter()
            .position(|d| envelope::field(d, "id") == "ide0")
            .or(if disks.is_empty() { None } else { Some(0) })
            .ok_or_else(|| ProviderError::Protocol(format!("server {id} reports no disks")))?;
        let current = envelope::ufield(&disks[index], "size_mb");
        if size_mb < current {
            return Err(ProviderError::BadRequest {
                message: format!("the system disk can only grow ({current} MB now, {size_mb} MB asked)"),
                code: String::new(),
            });
        }
        disks[index]["size_mb"] = json!(size_mb);
        let path = format!("{API}/servers/{}", seg(id.as_str())?);
        let body = json!({"disks": disks});
        let data =
            self.call(Call::write("resize_disk", Method::PUT, path, &body, Some(op.token("resize_disk")))).await?;
        task_of("resize_disk", &data)
    }

    async fn set_password(&self, id: &ServerId, password: &Secret, op: &OpKey) -> ProviderResult<TaskId> {
        let send = |encrypted: String| {
            self.server_action("set_password", id, "server-password", json!({"password": encrypted}), op)
        };
        self.with_encrypted(password.expose(), send).await
    }

    async fn delete(&self, id: &ServerId, permanent: bool, op: &OpKey) -> ProviderResult<TaskId> {
        let path = format!("{API}/servers/{}", seg(id.as_str())?);
        let body = json!({"force": u8::from(permanent)});
        let data = self
            .call(Call::write("delete_server", Method::DELETE, path, &body, Some(op.token("delete_server"))))
            .await?;
        task_of("delete_server", &data)
    }

    async fn restore(&self, id: &ServerId, op: &OpKey) -> ProviderResult<TaskId> {
        self.server_action("restore_server", id, "restore", json!({}), op).await
    }

    async fn get_task(&self, id: &TaskId) -> ProviderResult<TaskState> {
        let data = self.call(Call::get("get_task", format!("{API}/tasks/{}", seg(id.as_str())?))).await?;
        Ok(wire::task(id, &data))
    }

    async fn remote_console(&self, id: &ServerId) -> ProviderResult<ConsoleUrl> {
        let path = format!("{API}/servers/{}/remote-consoles", seg(id.as_str())?);
        let body = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
        // Every call asks for a new console, so the token is new each time too; retries of
        // one call reuse it, and SCP answers a replay with the URL it already gave.
        let token = uuid::Uuid::new_v4().simple().to_string();
        let data = self.call(Call::write("remote_console", Method::POST, path, &body, Some(token))).await?;
        let url = envelope::field(&data, "url");
        if url.is_empty() {
            return Err(ProviderError::Protocol("remote_console: the answer has no url".into()));
        }
        Ok(ConsoleUrl::new(url))
    }

    async fn open_console(&self, id: &ServerId) -> ProviderResult<crate::provider::console::ConsoleSocket> {
        let url = self.remote_console(id).await?;
        crate::provider::console::connect(&url, self.tls(), self.timeout()).await
    }

    async fn server_metrics(
        &self,
        id: &ServerId,
        names: &[String],
        timegap: TimeGap,
        granularity: Option<u32>,
    ) -> ProviderResult<ServerMetrics> {
        let bad = |message: String| ProviderError::BadRequest { message, code: String::new() };
        if names.is_empty() {
            return Err(bad("name at least one metric".into()));
        }
        if let Some(n) = names.iter().find(|n| n.is_empty() || n.contains([',', ' ', '&', '='])) {
            return Err(bad(format!("invalid metric name {n:?}")));
        }
        let granularity = granularity.unwrap_or(0).max(timegap.min_granularity());
        let call = Call::get("server_metrics", format!("{API}/metrics/{}", seg(id.as_str())?))
            .query("object_type", "server")
            .query("metric_names", names.join(","))
            .query("timegap", timegap)
            .query("granularity", granularity);
        let data = self.call(call).await?;
        wire::metrics(&data).ok_or_else(|| ProviderError::Protocol("server_metrics: data is not an object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::NicSpec;

    #[test]
    fn create_body_carries_tag_nics_and_disk() {
        let spec = ServerSpec {
            name: "vm1".into(),
            zone_id: "az1".into(),
            image_id: "img1".into(),
            storage_tag_id: "tag1".into(),
            cores: 2,
            sockets: 1,
            memory_mb: 2048,
            disk_mb: Some(81920),
            nics: vec![NicSpec { network_id: "vpc1".into(), subnet_id: "sn1".into(), ip: Some("10.0.0.5".into()) }],
            owner_tag: "vmauto:i:v".into(),
            power_on: true,
            hostname: Some("web-1.example.com".into()),
        };
        let b = create_body(&spec);
        assert_eq!(b["description"], "vmauto:i:v");
        assert_eq!(b["networks"][0]["vif_id"], "net0");
        assert_eq!(b["networks"][0]["ip_info"]["ip_address"], "10.0.0.5");
        assert_eq!(b["disks"][0]["size_mb"], 81920);
        assert_eq!(b["power_on"], 1);
        assert_eq!(b["location"]["id"], "cluster");
        assert_eq!(b["hostname"], "web-1.example.com");
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        assert!(seg("abc-123").is_ok());
        for bad in ["", "../x", "a/b", "a?b", ".."] {
            assert!(seg(bad).is_err(), "{bad}");
        }
    }
}
