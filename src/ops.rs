//! Operator commands that talk to a running appliance: `vmauto healthcheck` and the online
//! side of `vmauto db export`.
//!
//! The embedded store is single-process: while the appliance runs, nothing else can open it.
//! `db export` therefore first tries the store and, when it is held, asks the running
//! appliance for a snapshot over `POST /internal/export` (see [`crate::http::backup`]). That
//! request is authenticated by [`export_token`]: an HMAC-SHA256, keyed with the appliance
//! key, over the current time, so only someone who can read the key file (root and the
//! `vmauto` user) can ask.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::db::models::operation::OperationId;

/// The header carrying the export token.
pub const EXPORT_AUTH_HEADER: &str = "x-vmauto-export";
/// The route of the online export.
pub const EXPORT_PATH: &str = "/internal/export";
/// Seconds an export token is valid either side of the server's clock.
pub const EXPORT_TOKEN_MAX_AGE_SECS: i64 = 60;
/// How long `vmauto healthcheck` waits for an answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the appliance key (hex in the key file) as bytes.
pub fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the appliance key {} (security.key_file)", path.display()))?;
    hex::decode(text.trim()).context("the appliance key is not hex")
}

fn export_mac(key: &[u8], unix_secs: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("vmauto-export.{unix_secs}").as_bytes());
    mac
}

/// The export token for `unix_secs`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "vmauto-export.<t>" keyed with the appliance key>`.
pub fn export_token(key: &[u8], unix_secs: i64) -> String {
    format!("t={unix_secs},v1={}", hex::encode(export_mac(key, unix_secs).finalize().into_bytes()))
}

/// Checks an export token against the key and the current time (constant-time compare).
pub fn verify_export_token(key: &[u8], token: &str, now_secs: i64) -> Result<(), &'static str> {
    let mut t = None;
    let mut v1 = None;
    for part in token.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return Err("malformed token") };
    if (now_secs - t).abs() > EXPORT_TOKEN_MAX_AGE_SECS {
        return Err("token expired (check both clocks)");
    }
    export_mac(key, t).verify_slice(&v1).map_err(|_| "wrong token")
}

/// The address a local client uses to reach `server.listen` (a wildcard becomes loopback).
pub fn local_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn client(timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
    crate::init_crypto();
    let mut b = reqwest::Client::builder().no_proxy().connect_timeout(Duration::from_secs(3));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().context("cannot build the HTTP client")
}

/// `vmauto cluster`: this configuration's node and who holds the work lease, read from the
/// store the nodes share.
pub async fn cluster_report(store: &crate::db::Store, config: &Config) -> anyhow::Result<String> {
    let node = &config.cluster.node_id;
    let mut out = if node.is_empty() {
        "cluster.node_id is empty: this configuration runs a single node (no lease).\n".to_string()
    } else {
        format!("this configuration's node: {node} (lease_secs {})\n", config.cluster.lease_secs)
    };
    match store.lease_holder().await? {
        Some(l) if l.expires_in >= 0.0 => out.push_str(&format!(
            "work lease: held by {} (counter {}), expires in {:.0} s unless renewed\n",
            l.node, l.fence, l.expires_in
        )),
        Some(l) => out.push_str(&format!(
            "work lease: expired {:.0} s ago (last held by {}, counter {}): no node holds it; the next to ask takes it\n",
            -l.expires_in, l.node, l.fence
        )),
        None => out.push_str("work lease: never taken (no node has run on this store with cluster.node_id set)\n"),
    }
    Ok(out.trim_end().to_string())
}

/// `vmauto healthcheck`: GET /healthz on the configured listen address; Ok when it answers
/// 200 within a few seconds.
pub async fn healthcheck(config: &Config) -> anyhow::Result<String> {
    let url = format!("http://{}/healthz", local_addr(config.server.listen));
    let resp =
        client(Some(HEALTHCHECK_TIMEOUT))?.get(&url).send().await.with_context(|| format!("no answer from {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(format!("ok: {url} answered {status}"))
}

/// `vmauto db export FILE`: a dump of the store, read directly when the store can be opened,
/// else asked from the running appliance. Returns what to print.
pub async fn export(config: &Config, file: &Path) -> anyhow::Result<String> {
    match crate::db::Store::connect(config).await {
        Ok(store) => {
            store.export(file).await?;
            Ok(format!("exported the store (schema version {}) to {}", store.schema_version().await?, file.display()))
        }
        Err(direct) => match export_from_running(config, file).await {
            Ok(bytes) => Ok(format!(
                "exported a snapshot from the running appliance at {} to {} ({bytes} bytes)",
                local_addr(config.server.listen),
                file.display()
            )),
            Err(online) => Err(online.context(format!(
                "the store cannot be opened ({direct:#}), and the running appliance did not export it"
            ))),
        },
    }
}

/// Streams `POST /internal/export` into `file` (through a temporary file renamed at the end,
/// so a broken transfer leaves no partial dump behind). Returns the bytes written.
pub async fn export_from_running(config: &Config, file: &Path) -> anyhow::Result<u64> {
    use tokio::io::AsyncWriteExt;

    let key = read_key(&config.key_file())?;
    let now = chrono::Utc::now().timestamp();
    let url = format!("http://{}{EXPORT_PATH}", local_addr(config.server.listen));
    let mut resp = client(None)?
        .post(&url)
        .header(EXPORT_AUTH_HEADER, export_token(&key, now))
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("{url} answered {status}: {body}");
    }
    let partial = file.with_extension("partial");
    let mut out =
        tokio::fs::File::create(&partial).await.with_context(|| format!("cannot create {}", partial.display()))?;
    let mut bytes = 0u64;
    let copied: anyhow::Result<()> = async {
        while let Some(chunk) = resp.chunk().await.context("the export stream broke off")? {
            bytes += chunk.len() as u64;
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, file).await.with_context(|| format!("cannot write {}", file.display()))?;
    Ok(bytes)
}

/// Purges the inbox ([`crate::db::inbox::purge`]): in the store when it can be opened,
/// otherwise through the running appliance (`POST /internal/inbox/purge`).
pub async fn purge(config: &Config) -> anyhow::Result<String> {
    let report = match crate::db::Store::open(config).await {
        Ok(store) => crate::db::inbox::purge(&store, &config.inbox, chrono::Utc::now()).await?,
        Err(direct) => {
            let body = local_post(config, "/internal/inbox/purge", &direct).await?;
            serde_json::from_value(body).context("the running appliance's purge answer could not be read")?
        }
    };
    Ok(format!(
        "inbox purged: {} settled webhooks compacted to their dedupe keys, {} rows deleted (retention {} days, dedupe \
         keys {} days)",
        report.compacted, report.deleted, config.inbox.retention_days, config.inbox.dedupe_days
    ))
}

/// Has the running appliance run an operator command (`POST /internal/cli`); answers what to
/// print.
pub async fn remote(
    config: &Config,
    command: &crate::commands::RemoteCommand,
    direct: &anyhow::Error,
) -> anyhow::Result<String> {
    let answer = local_post_json(config, "/internal/cli", direct, Some(serde_json::to_value(command)?)).await?;
    Ok(answer["output"].as_str().unwrap_or_default().to_string())
}

/// POSTs to a local-operator endpoint of the running appliance (loopback, appliance-key
/// token); answers the JSON body, or the error the appliance gave.
async fn local_post(config: &Config, path: &str, direct: &anyhow::Error) -> anyhow::Result<serde_json::Value> {
    local_post_json(config, path, direct, None).await
}

async fn local_post_json(
    config: &Config,
    path: &str,
    direct: &anyhow::Error,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let key = read_key(&config.key_file())?;
    let url = format!("http://{}{path}", local_addr(config.server.listen));
    let mut req = client(Some(Duration::from_secs(120)))?
        .post(&url)
        .header(EXPORT_AUTH_HEADER, export_token(&key, chrono::Utc::now().timestamp()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("the store cannot be opened ({direct:#}) and {url} did not answer"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = body["message"].as_str().unwrap_or("no message");
        bail!("{msg} ({status})");
    }
    Ok(body)
}

/// Retries a dead operation: in the store when it can be opened (the appliance is down, or
/// the store is a server), otherwise through the running appliance
/// (`POST /internal/operations/{id}/retry`, the same local-operator token as the export).
pub async fn retry(config: &Config, op: &str) -> anyhow::Result<String> {
    match crate::db::Store::open(config).await {
        Ok(store) => match crate::admin::retry_operation(&store, None, &OperationId::from(op), "cli").await {
            Ok(vps) => Ok(format!("operation {op} of VPS {vps} queued again; it runs when the appliance starts")),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        },
        Err(direct) => {
            let body = local_post(config, &format!("/internal/operations/{op}/retry"), &direct).await?;
            Ok(format!("operation {op} of VPS {} retried: a fresh series of attempts started", body["vps"]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_tokens_verify_only_with_the_key_and_in_time() {
        let key = [7u8; 32];
        let token = export_token(&key, 1_000);
        assert_eq!(verify_export_token(&key, &token, 1_030), Ok(()));
        assert_eq!(verify_export_token(&[8u8; 32], &token, 1_000), Err("wrong token"));
        assert!(verify_export_token(&key, &token, 1_000 + EXPORT_TOKEN_MAX_AGE_SECS + 1).is_err());
        assert!(verify_export_token(&key, &token, 1_000 - EXPORT_TOKEN_MAX_AGE_SECS - 1).is_err());
        assert_eq!(verify_export_token(&key, "t=1000", 1_000), Err("malformed token"));
        let forged = token.replace("t=1000", "t=1010");
        assert_eq!(verify_export_token(&key, &forged, 1_000), Err("wrong token"));
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        assert_eq!(local_addr("0.0.0.0:8080".parse().expect("addr")).to_string(), "127.0.0.1:8080");
        assert_eq!(local_addr("[::]:8080".parse().expect("addr")).to_string(), "[::1]:8080");
        assert_eq!(local_addr("10.0.0.5:9000".parse().expect("addr")).to_string(), "10.0.0.5:9000");
    }
}
