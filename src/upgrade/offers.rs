//! Upgrade offers: stored in `upgrade_offer` (record id = offer id), seeded from
//! `[[stripe.offers]]` at start-up, edited through [`create_offer`], [`update_offer`] and
//! [`disable_offer`]. [`offers_for_vps`] answers what one VPS can buy right now: offers that
//! apply to its template, grow it, and fit the free capacity of its AZ.

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;

use crate::config::{Config, OfferConfig};
use crate::db::Store;
use crate::db::models::upgrade_offer::OfferTerms;
use crate::lifecycle::Level;
use crate::lifecycle::{Spec, Template, Vps, VpsState};
use crate::provider::Capacity;

pub use crate::db::models::upgrade_offer::{Offer, OfferId};

/// What an admin gives to create or change an offer (the same shape as `[[stripe.offers]]`).
pub type OfferInput = OfferConfig;

/// What buying an offer makes of a VPS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub spec: Spec,
    /// The template the VPS moves to (template offers only).
    pub template: Option<Template>,
}

/// An offer a VPS can buy now, with what it becomes.
#[derive(Debug, Clone)]
pub struct Available {
    pub offer: Offer,
    pub target: Target,
}

/// The terms `input` writes, its currency defaulting to `default_currency`.
fn terms_of<'a>(input: &'a OfferInput, default_currency: &'a str) -> OfferTerms<'a> {
    OfferTerms {
        name: input.name.trim(),
        from_template: &input.from_template,
        to_template: &input.to_template,
        add_cores: input.add_cores,
        add_memory_gb: input.add_memory_gb,
        add_disk_gb: input.add_disk_gb,
        price: input.price,
        currency: if input.currency.is_empty() { default_currency } else { input.currency.as_str() },
    }
}

/// Every offer, enabled or not, by id.
pub async fn list_offers(store: &Store) -> anyhow::Result<Vec<Offer>> {
    store.upgrade_offers().await
}

/// One offer.
pub async fn get_offer(store: &Store, id: &OfferId) -> anyhow::Result<Option<Offer>> {
    store.upgrade_offer(id).await
}

/// Creates an enabled offer; fails when the input is invalid or the id is taken.
pub async fn create_offer(store: &Store, config: &Config, input: &OfferInput, by: &str) -> anyhow::Result<Offer> {
    input.check().map_err(|e| anyhow::anyhow!("offer{e}"))?;
    let id = OfferId::from(input.id.as_str());
    if get_offer(store, &id).await?.is_some() {
        bail!("offer {:?} exists already; change it instead", input.id);
    }
    store.create_upgrade_offer(&id, &terms_of(input, &config.stripe.currency), by).await?;
    record(store, by, &id, "created").await;
    get_offer(store, &id).await?.context("the new offer vanished")
}

/// Replaces an offer's terms (name, templates, deltas, price, currency); `enabled` is kept.
pub async fn update_offer(store: &Store, config: &Config, input: &OfferInput, by: &str) -> anyhow::Result<Offer> {
    input.check().map_err(|e| anyhow::anyhow!("offer{e}"))?;
    let id = OfferId::from(input.id.as_str());
    if get_offer(store, &id).await?.is_none() {
        bail!("there is no offer {:?}", input.id);
    }
    store.update_upgrade_offer(&id, &terms_of(input, &config.stripe.currency)).await?;
    record(store, by, &id, "changed").await;
    get_offer(store, &id).await?.context("the offer vanished")
}

/// Stops selling an offer (`enabled = false`) or sells it again; answers whether it exists.
pub async fn set_offer_enabled(store: &Store, id: &OfferId, enabled: bool, by: &str) -> anyhow::Result<bool> {
    if get_offer(store, id).await?.is_none() {
        return Ok(false);
    }
    store.set_upgrade_offer_enabled(id, enabled).await?;
    record(store, by, id, if enabled { "enabled" } else { "disabled" }).await;
    Ok(true)
}

/// Stops selling an offer; answers whether it exists. Links already paid are not affected.
pub async fn disable_offer(store: &Store, id: &OfferId, by: &str) -> anyhow::Result<bool> {
    set_offer_enabled(store, id, false, by).await
}

async fn record(store: &Store, by: &str, id: &OfferId, what: &str) {
    let _ = store
        .record_activity(
            Level::Info,
            by,
            Some(&format!("upgrade_offer:{id}")),
            &format!("upgrade offer {id} {what}"),
            json!({}),
        )
        .await;
}

/// Writes the offers of `[[stripe.offers]]` that are not in the store yet (an offer an admin
/// changed keeps the admin's terms). Returns how many were written.
pub async fn sync_config_offers(store: &Store, config: &Config) -> anyhow::Result<usize> {
    let mut written = 0;
    for o in &config.stripe.offers {
        let id = OfferId::from(o.id.as_str());
        if get_offer(store, &id).await?.is_some() {
            continue;
        }
        store.create_upgrade_offer(&id, &terms_of(o, &config.stripe.currency), "appliance.toml").await?;
        written += 1;
    }
    Ok(written)
}

/// What `offer` makes of `vps`, or why it does not apply (pure; `to` is the offer's target
/// template when it names one).
pub fn target_of(offer: &Offer, vps: &Vps, to: Option<&Template>) -> Result<Target, String> {
    if !offer.enabled {
        return Err("the offer is not sold any more".into());
    }
    if !offer.from_template.is_empty() && offer.from_template != vps.template {
        return Err(format!("the offer is for {} servers", offer.from_template));
    }
    let cur = vps.spec;
    let (spec, template) = if offer.to_template.is_empty() {
        let spec = Spec {
            cores: cur.cores.saturating_add(offer.add_cores),
            memory_mb: cur.memory_mb.saturating_add(offer.add_memory_gb.saturating_mul(1024)),
            disk_gb: cur.disk_gb.saturating_add(offer.add_disk_gb),
        };
        (spec, None)
    } else {
        let t = to.filter(|t| t.name == offer.to_template && t.enabled).ok_or("the target plan is not available")?;
        if t.name == vps.template {
            return Err("the server is on this plan already".into());
        }
        (Spec::from(t), Some(t.clone()))
    };
    if spec.cores < cur.cores || spec.memory_mb < cur.memory_mb || spec.disk_gb < cur.disk_gb {
        return Err("the offer would shrink the server".into());
    }
    if spec == cur {
        return Err("the offer would not change the server".into());
    }
    Ok(Target { spec, template })
}

/// Whether growing from `from` to `to` fits the free capacity (a resource SCP does not
/// report is not checked).
pub fn fits(cap: &Capacity, from: Spec, to: Spec) -> bool {
    let grow_cores = f64::from(to.cores.saturating_sub(from.cores));
    let grow_mem = to.memory_mb.saturating_sub(from.memory_mb) as f64;
    let grow_disk_mb = to.disk_gb.saturating_sub(from.disk_gb).saturating_mul(1024) as f64;
    cap.cpu.as_ref().is_none_or(|c| c.free() >= grow_cores)
        && cap.memory.as_ref().is_none_or(|m| m.free() >= grow_mem)
        && cap.storage.as_ref().is_none_or(|s| s.free() >= grow_disk_mb)
}

/// The offers `vps` can buy now: enabled, applicable, growing it, and fitting the free
/// capacity of its AZ, read by `capacity` (for customer pages: the gateway's cached,
/// customer-lane read). Fails when the VPS is not active or the capacity cannot be read in
/// time: nothing is sold blind.
pub async fn offers_for_vps(
    store: &Store,
    capacity: impl AsyncFnOnce(String) -> anyhow::Result<Capacity>,
    vps: &Vps,
) -> anyhow::Result<Vec<Available>> {
    if vps.state != VpsState::Active {
        bail!("the VPS is {}, not active", vps.state.as_str());
    }
    let mut candidates = Vec::new();
    for offer in list_offers(store).await?.into_iter().filter(|o| o.enabled) {
        let to = if offer.to_template.is_empty() { None } else { store.template_by_name(&offer.to_template).await? };
        if let Ok(target) = target_of(&offer, vps, to.as_ref()) {
            candidates.push(Available { offer, target });
        }
    }
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let zone = store.upgrade_vps_az(&vps.id).await?.filter(|z| !z.is_empty());
    let zone = match zone {
        Some(z) => z,
        None => store.template_by_name(&vps.template).await?.map(|t| t.az_id).context("the VPS's AZ is unknown")?,
    };
    let mut cap = capacity(zone.clone()).await.with_context(|| format!("cannot read the capacity of AZ {zone}"))?;
    // What placement has reserved there for VMs being created (the answer may be up to the
    // capacity cache's age old): an upgrade does not take the room of a VM already sold.
    let provider = store.vps_template(&vps.id).await?.map(|t| t.provider).unwrap_or_default();
    let since = chrono::Utc::now() - chrono::Duration::seconds(30);
    let reserved = store.reserved_in(&provider, &zone, since).await?;
    let take = |item: &mut Option<crate::provider::CapacityItem>, v: u64| {
        if let Some(i) = item.as_mut() {
            i.used += v as f64;
        }
    };
    take(&mut cap.cpu, reserved.cores);
    take(&mut cap.memory, reserved.memory_mb);
    take(&mut cap.storage, reserved.disk_gb * 1024);
    candidates.retain(|a| fits(&cap, vps.spec, a.target.spec));
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::CapacityItem;

    fn vps(template: &str, cores: u32, memory_mb: u64, disk_gb: u64) -> Vps {
        Vps {
            id: "v1".into(),
            state: VpsState::Active,
            subscription: None,
            template: template.into(),
            spec: Spec { cores, memory_mb, disk_gb },
            server_id: None,
            delete_after: None,
            power: None,
        }
    }

    fn offer(to: &str, cores: u32, mem_gb: u64, disk_gb: u64) -> Offer {
        Offer {
            id: "o".into(),
            name: "o".into(),
            from_template: "".into(),
            to_template: to.into(),
            add_cores: cores,
            add_memory_gb: mem_gb,
            add_disk_gb: disk_gb,
            price: 100,
            currency: "usd".into(),
            enabled: true,
        }
    }

    fn template(name: &str, cores: u32, memory_mb: u64, disk_gb: u64) -> Template {
        serde_json::from_value(json!({"name": name, "az_id": "az", "image_id": "i", "storage_tag_id": "s",
            "cores": cores, "memory_mb": memory_mb, "disk_gb": disk_gb}))
        .expect("template")
    }

    #[test]
    fn deltas_add_and_templates_replace_but_never_shrink() {
        let v = vps("small", 1, 1024, 20);
        let t = target_of(&offer("", 1, 2, 10), &v, None).expect("applies");
        assert_eq!(t.spec, Spec { cores: 2, memory_mb: 3072, disk_gb: 30 });
        let big = template("large", 4, 8192, 80);
        let t = target_of(&offer("large", 0, 0, 0), &v, Some(&big)).expect("applies");
        assert_eq!(t.spec.cores, 4);
        assert_eq!(t.template.map(|t| t.name), Some("large".into()));
        let tiny = template("tiny", 1, 512, 80);
        assert!(target_of(&offer("tiny", 0, 0, 0), &v, Some(&tiny)).unwrap_err().contains("shrink"));
        assert!(target_of(&offer("large", 0, 0, 0), &v, None).is_err(), "a missing template is not sold");
        let mut from = offer("", 1, 0, 0);
        from.from_template = "medium".into();
        assert!(target_of(&from, &v, None).is_err());
        let mut off = offer("", 1, 0, 0);
        off.enabled = false;
        assert!(target_of(&off, &v, None).is_err());
    }

    #[test]
    fn capacity_must_cover_the_growth_only() {
        let cap = Capacity {
            cpu: Some(CapacityItem { total: 10.0, used: 8.0, unit: "core".into() }),
            memory: Some(CapacityItem { total: 8192.0, used: 4096.0, unit: "MB".into() }),
            storage: None,
        };
        let from = Spec { cores: 2, memory_mb: 2048, disk_gb: 20 };
        assert!(fits(&cap, from, Spec { cores: 4, memory_mb: 6144, disk_gb: 500 }));
        assert!(!fits(&cap, from, Spec { cores: 5, memory_mb: 2048, disk_gb: 20 }));
        assert!(!fits(&cap, from, Spec { cores: 2, memory_mb: 6145, disk_gb: 20 }));
    }
}
