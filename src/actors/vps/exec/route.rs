//! Which SCP an operation's calls go to: the gateway of the provider the VPS's VM lives on.

use super::ExecContext;

impl ExecContext {
    /// The context for the operations of `vps`: calls go to the gateway of the provider its
    /// VM lives on (its template row's). `Err` says why its operations cannot run: a provider
    /// that is not configured (any SCP call would reach the wrong SCP).
    pub async fn for_vps(&self, vps: &crate::lifecycle::VpsId) -> anyhow::Result<Result<Self, String>> {
        let routed = self.gateways.of_vps(&self.store, vps).await?;
        Ok(routed.map(|gateway| Self { gateway, ..self.clone() }))
    }
}
