//! Maps `METHOD /janus/...` to a route. One hand-written table instead of actix routing, so
//! the simulator answers unknown paths, wrong methods and every version alias (§1.2) in SCP's
//! own envelope, and can name each endpoint pattern for the request counters.

use super::tasks::PowerOp;

/// The API versions accepted as aliases of each other.
pub const VERSIONS: [&str; 5] = ["20180725", "20190725", "20200725", "20210725", "20240725"];

/// One SCP endpoint, with the ids taken from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    PublicKey,
    Authenticate,
    ListServers,
    CreateServer,
    GetServer { id: &'a str, detailed: bool },
    UpdateServer(&'a str),
    DeleteServer(&'a str),
    Power(&'a str, PowerOp),
    Action(&'a str),
    Batch,
    Restore(&'a str),
    Clone(&'a str),
    Console(&'a str),
    Password(&'a str),
    Migrate(&'a str),
    Tasks,
    Task(&'a str),
    Azs,
    Az(&'a str),
    Overview,
    StorageTags,
    Images,
    Image(&'a str),
    Vpcs,
    Vpc(&'a str),
    Subnets,
    Subnet(&'a str),
    FloatingIps,
    FloatingIp(&'a str),
    FloatingIpPools,
    Volumes,
    CreateVolume,
    Volume(&'a str),
    ResizeVolume(&'a str),
    DeleteVolume(&'a str),
    Projects,
    Project(&'a str),
    Hosts,
    SystemVersion,
    Maintenance,
    Platform,
    Licenses,
    Metrics(&'a str),
}

impl Route<'_> {
    /// Reachable without `Authorization` (§5.10).
    pub fn public(self) -> bool {
        matches!(self, Self::PublicKey | Self::Authenticate)
    }
    /// Needs the platform RSA key (decrypts a password or publishes the key).
    pub fn needs_key(self) -> bool {
        matches!(self, Self::PublicKey | Self::Authenticate | Self::CreateServer | Self::Password(_))
    }
}

/// The outcome of routing: a route and its pattern name, or whether only the method was wrong.
pub enum Resolved<'a> {
    Found(Route<'a>, &'static str),
    WrongMethod,
    NotFound,
}

/// Routes a request path (without query). Trailing slashes are ignored.
pub fn resolve<'a>(method: &str, path: &'a str) -> Resolved<'a> {
    match route(method, path) {
        Some((r, p)) => Resolved::Found(r, p),
        // The path exists under another method: 405 rather than 404.
        None if ["GET", "POST", "PUT", "DELETE"].iter().any(|m| *m != method && route(m, path).is_some()) => {
            Resolved::WrongMethod
        }
        None => Resolved::NotFound,
    }
}

fn route<'a>(method: &str, path: &'a str) -> Option<(Route<'a>, &'static str)> {
    let rest = path.strip_prefix("/janus/")?;
    let segs: Vec<&'a str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        ("GET", ["v2", "public-key"] | ["public-key"]) => return Some((Route::PublicKey, "GET /janus/public-key")),
        ("POST", ["authenticate"]) => return Some((Route::Authenticate, "POST /janus/authenticate")),
        _ => {}
    }
    let (version, segs) = segs.split_first()?;
    if !VERSIONS.contains(version) {
        return None;
    }
    let r = match (method, segs) {
        ("GET", ["servers"]) => (Route::ListServers, "GET /janus/{v}/servers"),
        ("POST", ["servers"]) => (Route::CreateServer, "POST /janus/{v}/servers"),
        ("POST", ["servers", "action"]) => (Route::Batch, "POST /janus/{v}/servers/action"),
        ("GET", ["servers", id]) => {
            (Route::GetServer { id, detailed: *version == "20240725" }, "GET /janus/{v}/servers/{id}")
        }
        ("PUT", ["servers", id]) => (Route::UpdateServer(id), "PUT /janus/{v}/servers/{id}"),
        ("DELETE", ["servers", id]) => (Route::DeleteServer(id), "DELETE /janus/{v}/servers/{id}"),
        ("POST", ["servers", id, op]) => match *op {
            "start" => (Route::Power(id, PowerOp::Start), "POST /janus/{v}/servers/{id}/start"),
            "stop" => (Route::Power(id, PowerOp::Stop), "POST /janus/{v}/servers/{id}/stop"),
            "reboot" => (Route::Power(id, PowerOp::Reboot), "POST /janus/{v}/servers/{id}/reboot"),
            "suspend" => (Route::Power(id, PowerOp::Suspend), "POST /janus/{v}/servers/{id}/suspend"),
            "action" => (Route::Action(id), "POST /janus/{v}/servers/{id}/action"),
            "restore" => (Route::Restore(id), "POST /janus/{v}/servers/{id}/restore"),
            "clone" => (Route::Clone(id), "POST /janus/{v}/servers/{id}/clone"),
            "remote-consoles" => (Route::Console(id), "POST /janus/{v}/servers/{id}/remote-consoles"),
            "server-password" => (Route::Password(id), "POST /janus/{v}/servers/{id}/server-password"),
            "migrate" => (Route::Migrate(id), "POST /janus/{v}/servers/{id}/migrate"),
            _ => return None,
        },
        ("GET", ["tasks"]) => (Route::Tasks, "GET /janus/{v}/tasks"),
        ("GET", ["tasks", id]) => (Route::Task(id), "GET /janus/{v}/tasks/{id}"),
        ("GET", ["azs"]) => (Route::Azs, "GET /janus/{v}/azs"),
        ("GET", ["azs", id]) => (Route::Az(id), "GET /janus/{v}/azs/{id}"),
        ("GET", ["overview"]) => (Route::Overview, "GET /janus/{v}/overview"),
        ("GET", ["storages", "tags"]) => (Route::StorageTags, "GET /janus/{v}/storages/tags"),
        ("GET", ["images"]) => (Route::Images, "GET /janus/{v}/images"),
        ("GET", ["images", id]) => (Route::Image(id), "GET /janus/{v}/images/{id}"),
        ("GET", ["vpcs"]) => (Route::Vpcs, "GET /janus/{v}/vpcs"),
        ("GET", ["vpcs", id]) => (Route::Vpc(id), "GET /janus/{v}/vpcs/{id}"),
        ("GET", ["subnets"]) => (Route::Subnets, "GET /janus/{v}/subnets"),
        ("GET", ["subnets", id]) => (Route::Subnet(id), "GET /janus/{v}/subnets/{id}"),
        ("GET", ["floatingips"]) => (Route::FloatingIps, "GET /janus/{v}/floatingips"),
        ("GET", ["floatingips", id]) => (Route::FloatingIp(id), "GET /janus/{v}/floatingips/{id}"),
        ("GET", ["floatingippools"]) => (Route::FloatingIpPools, "GET /janus/{v}/floatingippools"),
        ("GET", ["volumes"]) => (Route::Volumes, "GET /janus/{v}/volumes"),
        ("POST", ["volumes"]) => (Route::CreateVolume, "POST /janus/{v}/volumes"),
        ("GET", ["volumes", id]) => (Route::Volume(id), "GET /janus/{v}/volumes/{id}"),
        ("PUT", ["volumes", id]) => (Route::ResizeVolume(id), "PUT /janus/{v}/volumes/{id}"),
        ("DELETE", ["volumes", id]) => (Route::DeleteVolume(id), "DELETE /janus/{v}/volumes/{id}"),
        ("GET", ["projects"]) => (Route::Projects, "GET /janus/{v}/projects"),
        ("GET", ["projects", id]) => (Route::Project(id), "GET /janus/{v}/projects/{id}"),
        ("GET", ["hosts"]) => (Route::Hosts, "GET /janus/{v}/hosts"),
        ("GET", ["system", "version"]) => (Route::SystemVersion, "GET /janus/{v}/system/version"),
        ("GET", ["system", "maintenance"]) => (Route::Maintenance, "GET /janus/{v}/system/maintenance"),
        ("GET", ["platform"]) => (Route::Platform, "GET /janus/{v}/platform"),
        ("GET", ["licenses", "summary"]) => (Route::Licenses, "GET /janus/{v}/licenses/summary"),
        ("GET", ["metrics", id]) => (Route::Metrics(id), "GET /janus/{v}/metrics/{id}"),
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_versions_and_methods() {
        assert!(matches!(resolve("GET", "/janus/20180725/servers"), Resolved::Found(Route::ListServers, _)));
        assert!(matches!(
            resolve("GET", "/janus/20240725/servers/abc/"),
            Resolved::Found(Route::GetServer { id: "abc", detailed: true }, _)
        ));
        assert!(matches!(resolve("GET", "/janus/v2/public-key"), Resolved::Found(Route::PublicKey, _)));
        assert!(matches!(resolve("PATCH", "/janus/20180725/servers"), Resolved::WrongMethod));
        assert!(matches!(resolve("GET", "/janus/19990101/servers"), Resolved::NotFound));
        assert!(matches!(resolve("GET", "/elsewhere"), Resolved::NotFound));
        assert!(matches!(resolve("GET", "/janus/20180725/nothing-here"), Resolved::NotFound));
        assert!(matches!(resolve("DELETE", "/janus/v2/public-key"), Resolved::WrongMethod));
    }
}
