//! Which SCP an operation's calls go to: the gateway of the provider the VPS's VM lives on.

use super::ExecContext;

impl ExecContext {
    /// The context for the operations of `vps`: calls go to the gateway of the provider its
    /// VM lives on (its template row's). `Err` says why its operations cannot run: a provider
    /// that is not configured (any SCP call would reach the wrong SCP).
    pub async fn for_vps(&self, vps: &crate::lifecycle::VpsId) -> anyhow::Result<Result<Self, String>> {
        let provider = self.store.vps_template(vps).await?.map(|t| t.provider).unwrap_or_default();
        Ok(match self.gateways.get(&provider) {
            Some(gw) => Ok(Self { gateway: gw.clone(), ..self.clone() }),
            None => Err(format!(
                "the VM of this VPS lives on provider {provider:?}, which is not configured: add [providers.{provider}] \
                 to appliance.toml and restart"
            )),
        })
    }
}
