//! Asking a plan mapper for a template: with the catalogue the instance keeps (contract
//! 1.2), or with the catalogue in the request (1.0 and 1.1).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bindings::{self, mapper};
use super::{BillingEvent, Bound, Catalogue, PluginError, PluginKind, PluginRuntime, TemplateChoice, v1_0};

impl PluginRuntime {
    /// Asks the plan-mapper plugin `plugin` for the template of `event` (blocking). A 1.2
    /// instance is given the catalogue only when it keeps another one (or none); pass the
    /// same `Arc` for an unchanged catalogue to skip even the comparison.
    pub fn choose_template_blocking(
        &self,
        plugin: &str,
        source: &str,
        event: &BillingEvent,
        catalogue: &Arc<Catalogue>,
        settings: &BTreeMap<String, String>,
    ) -> Result<TemplateChoice, PluginError> {
        let loaded = self.get(plugin, PluginKind::PlanMapper)?;
        let mut warm = self.checkout(&loaded)?;
        warm.store.set_epoch_deadline(self.deadline_ticks());
        let result = match &warm.bound {
            Bound::Mapper(instance) => {
                let mapper = instance.vmauto_plugin_mapper();
                let keeps = warm.kept.as_ref().is_some_and(|k| Arc::ptr_eq(k, catalogue) || **k == **catalogue);
                let kept = if keeps {
                    Ok(())
                } else {
                    let (templates, mappings) = bindings::catalogue_to_wit(catalogue);
                    let kept = mapper.call_keep_catalogue(&mut warm.store, &templates, &mappings);
                    warm.kept = kept.is_ok().then(|| catalogue.clone());
                    kept
                };
                kept.and_then(|()| {
                    let (event, settings) = (bindings::mapper_event(event), bindings::pairs(settings));
                    mapper.call_choose_kept(&mut warm.store, source, &event, &settings)
                })
                .map(|a| a.map_err(bindings::rejection_from_mapper))
            }
            Bound::MapperV1_1(instance) => instance
                .vmauto_plugin_mapper()
                .call_choose(&mut warm.store, &bindings::mapping_request(source, event, catalogue, settings))
                .map(|a| a.map_err(bindings::rejection_from_mapper)),
            Bound::MapperV1_0(instance) => instance
                .vmauto_plugin_mapper()
                .call_choose(
                    &mut warm.store,
                    &v1_0::mapping_request_to_v1_0(bindings::mapping_request(source, event, catalogue, settings)),
                )
                .map(|a| a.map(v1_0::choice_to_current).map_err(bindings::rejection_from_mapper_v1_0)),
            _ => return Err(PluginError::Unavailable("instance kind mismatch".into())),
        };
        match self.settle(plugin, &loaded, warm, result)? {
            mapper::vmauto::plugin::types::Choice::Template(name) => {
                if catalogue.templates.iter().any(|t| t.name == name) {
                    Ok(TemplateChoice::Template(name))
                } else {
                    Err(PluginError::BadOutput {
                        plugin: plugin.into(),
                        reason: format!("chose template {name:?}, which is not in the catalogue"),
                    })
                }
            }
            mapper::vmauto::plugin::types::Choice::None(reason) => Ok(TemplateChoice::None(reason)),
        }
    }

    /// Asks the plan mapper on tokio's blocking pool.
    pub async fn choose_template(
        self: &Arc<Self>,
        plugin: &str,
        source: &str,
        event: BillingEvent,
        catalogue: Arc<Catalogue>,
        settings: BTreeMap<String, String>,
    ) -> Result<TemplateChoice, PluginError> {
        let _slot = self.slots.acquire().await.map_err(|e| PluginError::Unavailable(e.to_string()))?;
        let (this, plugin, source) = (self.clone(), plugin.to_string(), source.to_string());
        tokio::task::spawn_blocking(move || {
            this.choose_template_blocking(&plugin, &source, &event, &catalogue, &settings)
        })
        .await
        .map_err(|e| PluginError::Unavailable(e.to_string()))?
    }
}
