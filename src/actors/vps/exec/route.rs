//! Which SCP an operation's calls go to: the gateway of the provider the VPS's VM lives on.

use super::ExecContext;

impl ExecContext {
    /// The context for the operations of `vps`: calls go to the gateway of the provider its
    /// VM lives on (its template row's). `Err` says why its operations cannot run: a provider
    /// that is not configured (any SCP call would reach the wrong SCP). The template row read
    /// for that is kept in the context ([`ExecContext::template`]).
    pub async fn for_vps(&self, vps: &crate::lifecycle::VpsId) -> anyhow::Result<Result<Self, String>> {
        let template = self.store.vps_template(vps).await?;
        let routed = self.gateways.of_template(vps, template.as_ref());
        Ok(routed.map(|gateway| Self { gateway, template: template.map(std::sync::Arc::new), ..self.clone() }))
    }
}
