//! `plan-table`: the default plan mapper. Looks the event's plan key up in the plan
//! mappings (`source + plan_key -> template`, `*` as the source matches every source) and
//! checks that the template exists and is enabled.
//!
//! Settings:
//! - `match_template_names` (`true`/`false`, default `true`): a plan key that names a
//!   template maps to it when no mapping row does.
//! - `fallback_template`: the template for plan keys nothing else matches.

use vmauto_plugin_sdk::{Choice, Error, MappingRequest, Result};

fn choose(req: &MappingRequest) -> Result<Choice> {
    let Some(plan) = req.event.plan_key.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(Choice::None("the event carries no plan key".into()));
    };
    let by_names = match vmauto_plugin_sdk::setting(&req.settings, "match_template_names") {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(Error::BadSetting(format!("match_template_names: {other:?} must be true or false")));
        }
    };
    let mapped = req
        .mappings
        .iter()
        .find(|m| m.source == req.source && m.plan_key == plan)
        .or_else(|| req.mappings.iter().find(|m| m.source == "*" && m.plan_key == plan))
        .map(|m| (m.template.as_str(), "plan mapping"));
    let named = by_names
        .then(|| req.templates.iter().find(|t| t.name == plan))
        .flatten()
        .map(|t| (t.name.as_str(), "template name"));
    let fallback = vmauto_plugin_sdk::setting(&req.settings, "fallback_template").map(|t| (t, "fallback_template"));
    let Some((template, how)) = mapped.or(named).or(fallback) else {
        return Ok(Choice::None(format!(
            "no plan mapping for source {:?} and plan {plan:?}; add one in the plan mappings",
            req.source
        )));
    };
    match req.templates.iter().find(|t| t.name == template) {
        None => {
            Ok(Choice::None(format!("the {how} for plan {plan:?} names template {template:?}, which does not exist")))
        }
        Some(t) if !t.enabled => Ok(Choice::None(format!("template {template:?} (plan {plan:?}) is disabled"))),
        Some(t) => Ok(Choice::Template(t.name.clone())),
    }
}

vmauto_plugin_sdk::export_mapper!(choose);
