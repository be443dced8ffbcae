//! The catalogue plan mappers choose from: the `template` and `plan_mapping` tables.
//!
//! Every decision that provisions or resizes reads it, and it changes only when an admin
//! edits it, so the store keeps the last one read and reads the tables again only when the
//! mark of their last change (`catalogue_version:current`, set by events on both tables,
//! schema 14) is not the one it was read under: one point read instead of both tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use vmauto_plugin_host::Catalogue;

use super::Store;
use super::models::template::{Template, TemplateName};

/// The catalogue as the decisions use it: the plugins' view and the template rows by name.
#[derive(Debug, Default)]
pub struct Catalogued {
    pub catalogue: Catalogue,
    pub templates: BTreeMap<TemplateName, Template>,
    /// [`Catalogued::for_source`]'s answers, made once per source.
    by_source: std::sync::Mutex<BTreeMap<String, Arc<Catalogue>>>,
}

impl Catalogued {
    /// The catalogue a plan mapper sees for `source`: every template, the source's own
    /// mappings and those for every source (`*`). The same `Arc` while this catalogue is
    /// current, so a plan mapper's instance that keeps it is not sent it again.
    pub fn for_source(&self, source: &str) -> Arc<Catalogue> {
        let filtered = || {
            let mut catalogue = self.catalogue.clone();
            catalogue.mappings.retain(|m| m.source == source || m.source == "*");
            Arc::new(catalogue)
        };
        let Ok(mut made) = self.by_source.lock() else { return filtered() };
        made.entry(source.to_string()).or_insert_with(filtered).clone()
    }
}

/// The last catalogue read, with the mark it was read under (`None`: never changed).
pub(crate) type CatalogueCache = std::sync::Mutex<Option<(Option<String>, Arc<Catalogued>)>>;

impl Store {
    /// Every template and plan mapping, as the plugin contract's catalogue.
    pub async fn catalogue(&self) -> anyhow::Result<Catalogue> {
        Ok(self.catalogued().await?.catalogue.clone())
    }

    /// The templates and plan mappings with the template rows, read again only after they
    /// changed (see the module's documentation).
    pub async fn catalogued(&self) -> anyhow::Result<Arc<Catalogued>> {
        let mark: Option<String> =
            self.query_first("SELECT VALUE mark FROM ONLY catalogue_version:current", json!({}), 0).await?;
        if let Ok(last) = self.catalogue.lock()
            && let Some((seen, kept)) = last.as_ref()
            && *seen == mark
        {
            return Ok(kept.clone());
        }
        let templates: Vec<Value> =
            self.query_one("SELECT * OMIT id FROM template ORDER BY name", json!({}), 0).await?;
        let mappings: Vec<Value> = self
            .query_one("SELECT source, plan_key, template FROM plan_mapping ORDER BY source, plan_key", json!({}), 0)
            .await?;
        let rows = templates
            .iter()
            .filter_map(|row| serde_json::from_value::<Template>(row.clone()).ok())
            .map(|t| (t.name.clone(), t))
            .collect();
        let read = Arc::new(Catalogued {
            catalogue: Catalogue::from_rows(&templates, &mappings),
            templates: rows,
            by_source: Default::default(),
        });
        if let Ok(mut last) = self.catalogue.lock() {
            // Kept under the mark read before the tables were: a change that raced the read
            // makes the next caller read them again.
            *last = Some((mark, read.clone()));
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str) -> Template {
        Template { name: TemplateName::from(name), ..Template::default() }
    }

    #[tokio::test]
    async fn the_catalogue_is_kept_until_a_template_or_mapping_changes() {
        let store = Store::in_memory().await;
        store.seed_template(&template("small"), "ghl", "starter").await.expect("seeded");
        let first = store.catalogued().await.expect("read");
        assert!(first.templates.contains_key(&TemplateName::from("small")));
        assert!(Arc::ptr_eq(&first, &store.catalogued().await.expect("kept")), "read again without a change");

        let mut big = template("big");
        big.cores = 8;
        store.upsert_template(&big, "admin").await.expect("saved");
        let second = store.catalogued().await.expect("read");
        assert_eq!(second.templates.get(&TemplateName::from("big")).map(|t| t.cores), Some(8));

        // Any writer counts, not only the store's own methods.
        store.execute("UPDATE template SET cores = 16 WHERE name = 'big'", json!({})).await.expect("raw update");
        let third = store.catalogued().await.expect("read");
        assert_eq!(third.templates.get(&TemplateName::from("big")).map(|t| t.cores), Some(16));

        store.map_plan("*", "any", &TemplateName::from("big"), "admin").await.expect("mapped");
        let fourth = store.catalogued().await.expect("read");
        let stripe = fourth.for_source("stripe");
        let plans: Vec<(&str, &str)> =
            stripe.mappings.iter().map(|m| (m.source.as_str(), m.plan_key.as_str())).collect();
        assert_eq!(plans, vec![("*", "any")], "another source's mappings are left out, every source's kept");
        // One catalogue per source while unchanged, so a mapper instance keeping it is not
        // sent it again.
        assert!(Arc::ptr_eq(&stripe, &fourth.for_source("stripe")));
        assert!(!Arc::ptr_eq(&stripe, &fourth.for_source("ghl")));

        assert!(store.delete_plan_mapping("ghl", "starter").await.expect("deleted"));
        let fifth = store.catalogued().await.expect("read");
        assert!(fifth.for_source("ghl").mappings.iter().all(|m| m.plan_key != "starter"));
    }
}
