//! Every provider's gateway, by provider name (`default` is `[provider.sangfor]`).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::Addr;

use super::{GatewayStatus, GetGatewayStatus, SangforGateway};
use crate::config::DEFAULT_PROVIDER;

/// The gateways of all providers; cheap to clone.
#[derive(Clone)]
pub struct Gateways(Arc<BTreeMap<String, Addr<SangforGateway>>>);

impl Gateways {
    /// `all` must hold the `default` provider.
    pub fn new(all: BTreeMap<String, Addr<SangforGateway>>) -> Self {
        assert!(all.contains_key(DEFAULT_PROVIDER), "the default provider's gateway is always started");
        Self(Arc::new(all))
    }

    /// The gateway of provider `name` (`""` and `default`: `[provider.sangfor]`).
    pub fn get(&self, name: &str) -> Option<&Addr<SangforGateway>> {
        self.0.get(if name.is_empty() { DEFAULT_PROVIDER } else { name })
    }

    /// `[provider.sangfor]`'s gateway.
    pub fn default_gateway(&self) -> &Addr<SangforGateway> {
        &self.0[DEFAULT_PROVIDER]
    }

    /// Provider names and gateways, `default` first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Addr<SangforGateway>)> {
        let default = self.0.get_key_value(DEFAULT_PROVIDER).map(|(n, a)| (n.as_str(), a));
        default.into_iter().chain(self.0.iter().filter(|(n, _)| *n != DEFAULT_PROVIDER).map(|(n, a)| (n.as_str(), a)))
    }

    /// How many providers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The gateway of the SCP the VM of `vps` lives on (its template row's provider). The inner
    /// `Err` says why there is none: a provider that is not configured (any call would reach
    /// the wrong SCP).
    pub async fn of_vps(
        &self,
        store: &crate::db::Store,
        vps: &crate::lifecycle::VpsId,
    ) -> anyhow::Result<Result<Addr<SangforGateway>, String>> {
        let template = store.vps_template(vps).await?;
        Ok(self.of_template(vps, template.as_ref()))
    }

    /// [`Gateways::of_vps`] with the VPS's template row already read.
    pub fn of_template(
        &self,
        vps: &crate::lifecycle::VpsId,
        template: Option<&crate::lifecycle::Template>,
    ) -> Result<Addr<SangforGateway>, String> {
        let provider = template.map(|t| t.provider.as_str()).unwrap_or_default();
        self.get(provider).cloned().ok_or_else(|| {
            format!(
                "the VM of VPS {vps} lives on provider {provider:?}, which is not configured: add \
                 [providers.{provider}] to appliance.toml and restart"
            )
        })
    }

    /// Each provider's gateway status (a gateway that does not answer is left out).
    pub async fn statuses(&self) -> Vec<(String, GatewayStatus)> {
        let mut out = Vec::new();
        for (name, gw) in self.iter() {
            if let Ok(s) = gw.send(GetGatewayStatus).await {
                out.push((name.to_string(), s));
            }
        }
        out
    }
}
