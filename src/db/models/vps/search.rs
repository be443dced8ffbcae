//! The VPS list's search. Its full-text index is kept apart from the VPS rows (schema 13):
//! a change of a VPS's search text only notes the VPS in `vps_text_due`, and
//! [`Store::index_vps_text`] copies the noted VPSs' text into `vps_text`, which holds the
//! index — every [`INDEX_EVERY`] (the scheduler) and before each search, so a search finds a
//! VPS written just before it.

use std::time::Duration;

use serde_json::{Value, json};

use super::{VPS_ROW, VpsQuery, VpsRow};
use crate::db::Store;
use crate::db::models::{PAGE_SIZE, Page, SEARCH_CAP};

/// How often the scheduler brings the search index up to date.
pub const INDEX_EVERY: Duration = Duration::from_secs(5);

/// How many change notes one indexing transaction takes.
const INDEX_PAGE: usize = 500;

/// One page of notes: the text of each noted VPS copied (or dropped, for a VPS that is no
/// more), the notes taken deleted, in one transaction. Notes written meanwhile are rows of
/// their own, so the VPS writes that make them never conflict with this.
const INDEX_STEP: &str = "BEGIN TRANSACTION;
    LET $due = (SELECT id, vps FROM vps_text_due LIMIT $page);
    FOR $k IN array::distinct($due.vps) {
        LET $text = (SELECT VALUE search FROM type::record('vps', $k))[0];
        IF $text == NONE {
            DELETE type::record('vps_text', $k) RETURN NONE;
        } ELSE {
            UPSERT type::record('vps_text', $k) SET text = $text, vps = type::record('vps', $k) RETURN NONE;
        };
    };
    DELETE $due.id RETURN NONE;
    RETURN [array::len($due)];
    COMMIT TRANSACTION;";

impl Store {
    /// Brings the search index up to date with every VPS change noted so far; answers how
    /// many notes it took. One pass runs at a time in this process.
    pub async fn index_vps_text(&self) -> anyhow::Result<usize> {
        let _one = self.vps_text_lock().lock().await;
        self.index_vps_text_now().await
    }

    /// [`Store::index_vps_text`], unless a pass is running already (then 0).
    pub async fn index_vps_text_if_idle(&self) -> anyhow::Result<usize> {
        let Ok(_one) = self.vps_text_lock().try_lock() else { return Ok(0) };
        self.index_vps_text_now().await
    }

    async fn index_vps_text_now(&self) -> anyhow::Result<usize> {
        // Any node may index: the index holds no decision.
        let store = self.unfenced();
        let mut taken = store.fill_vps_text().await?;
        loop {
            let n: Vec<usize> = store.query_one(INDEX_STEP, json!({ "page": INDEX_PAGE }), 4).await?;
            let n = n.first().copied().unwrap_or(0);
            taken += n;
            if n < INDEX_PAGE {
                return Ok(taken);
            }
        }
    }

    /// Indexes every VPS that was there when the store was brought to schema 13, in order of
    /// their keys, a page per transaction, remembering where it got to (`vps_text_fill:state`,
    /// gone once done); answers how many it indexed.
    async fn fill_vps_text(&self) -> anyhow::Result<usize> {
        let mut filled = 0;
        loop {
            let after: Vec<Value> = self.query_one("SELECT VALUE after FROM vps_text_fill:state", json!({}), 0).await?;
            let Some(after) = after.first().and_then(Value::as_str) else { return Ok(filled) };
            // A key range reads from where the last page ended (a filter on `id` scans the
            // table from its start every page); vmauto's own keys are plain, others take the
            // filter.
            let plain = after.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let from = match after {
                "" => "vps".to_string(),
                _ if plain => format!("vps:⟨{after}⟩>.."),
                _ => "vps WHERE id > type::record('vps', $after) ORDER BY id".to_string(),
            };
            let n: Vec<usize> = self
                .query_one(
                    &format!(
                        "BEGIN TRANSACTION;
                         LET $rows = (SELECT record::id(id) AS k, search FROM {from} LIMIT $page);
                         FOR $r IN $rows {{
                             UPSERT type::record('vps_text', $r.k) SET text = $r.search,
                                 vps = type::record('vps', $r.k) RETURN NONE;
                         }};
                         IF array::len($rows) < $page {{ DELETE vps_text_fill:state RETURN NONE; }}
                         ELSE {{ UPSERT vps_text_fill:state SET after = array::last($rows).k RETURN NONE; }};
                         RETURN [array::len($rows)];
                         COMMIT TRANSACTION;"
                    ),
                    json!({ "page": INDEX_PAGE, "after": after }),
                    4,
                )
                .await?;
            filled += n.first().copied().unwrap_or(0);
        }
    }

    /// A search: the first [`SEARCH_CAP`] matches the index yields, then sorted and paged.
    pub(super) async fn search_vps(&self, query: &VpsQuery) -> anyhow::Result<Page<VpsRow>> {
        self.index_vps_text().await?;
        let mut bindings = query.bindings();
        let conds: Vec<String> = std::iter::once("text @@ $q".to_string())
            .chain(query.filters().iter().map(|c| format!("vps.{c}")))
            .collect();
        let mut ids: Vec<Value> = self
            .query_one(
                &format!(
                    "SELECT VALUE record::id(id) FROM vps_text WHERE {} LIMIT {}",
                    conds.join(" AND "),
                    SEARCH_CAP + 1
                ),
                bindings.clone(),
                0,
            )
            .await?;
        let capped = ids.len() as u64 > SEARCH_CAP;
        ids.truncate(SEARCH_CAP as usize);
        let total = ids.len() as u64;
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let page = query.page.clamp(1, pages);
        bindings["ids"] = json!(ids);
        let rows: Vec<VpsRow> = if ids.is_empty() {
            Vec::new()
        } else {
            self.query_one(
                &format!(
                    "LET $records = array::map($ids, |$k| type::record('vps', $k));
                         SELECT {VPS_ROW} FROM $records ORDER BY {} LIMIT {PAGE_SIZE} START {}",
                    query.order(),
                    (page - 1) * PAGE_SIZE
                ),
                bindings,
                1,
            )
            .await?
        };
        Ok(Page { rows, total, page, pages, capped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::models::vps::{VpsId, VpsPatch, VpsState};

    async fn store() -> Store {
        Store::in_memory().await
    }

    async fn add(s: &Store, key: &str, name: &str, email: &str, state: &str) {
        s.execute(
            "CREATE type::record('vps', $key) CONTENT { name: $name, customer_email: $email, state: $state,
                 source: 'ghl', template: 'vps-small', ips: [], created_at: time::now(), updated_at: time::now() }",
            json!({ "key": key, "name": name, "email": email, "state": state }),
        )
        .await
        .expect("vps");
    }

    async fn found(s: &Store, q: &str, state: &str) -> Vec<String> {
        let query = VpsQuery { q: q.into(), state: state.into(), ..VpsQuery::default() };
        let mut ids: Vec<String> =
            s.list_vps(&query).await.expect("search").rows.into_iter().map(|r| r.id.to_string()).collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_search_finds_what_was_written_just_before_it_and_follows_its_changes() {
        let s = store().await;
        add(&s, "va", "web-1", "dana@example.com", "active").await;
        add(&s, "vb", "web-2", "eve@example.org", "suspended").await;
        // Written, not indexed yet: the search brings the index up to date first.
        assert_eq!(found(&s, "dana", "").await, vec!["va"]);
        assert_eq!(found(&s, "web", "").await, vec!["va", "vb"]);
        assert_eq!(found(&s, "web", "suspended").await, vec!["vb"], "the filters still apply");
        assert_eq!(found(&s, "web exam", "").await, vec!["va", "vb"], "every word starts a word");
        assert!(found(&s, "web nobody", "").await.is_empty());
        assert_eq!(s.index_vps_text().await.expect("index"), 0, "nothing is due any more");

        // A new address is found, and the text it replaced no longer is.
        let ips = |a: &str| VpsPatch { ips: Some(vec![a.to_string()]), ..VpsPatch::default() };
        s.update_vps(&VpsId::from("va"), &ips("10.0.3.7")).await.expect("patch");
        assert_eq!(found(&s, "10.0.3", "").await, vec!["va"]);
        s.update_vps(&VpsId::from("va"), &ips("192.168.9.9")).await.expect("patch");
        assert!(found(&s, "10.0.3", "").await.is_empty());
        assert_eq!(found(&s, "192.168", "").await, vec!["va"]);

        // A write that leaves the text as it was notes nothing.
        s.update_vps(&VpsId::from("va"), &VpsPatch::state(VpsState::Suspended)).await.expect("patch");
        assert_eq!(s.index_vps_text().await.expect("index"), 0);

        // A VPS that is no more leaves the index.
        s.execute("DELETE vps:vb", json!({})).await.expect("delete");
        assert!(found(&s, "eve", "").await.is_empty());
        let left: Vec<Value> = s.query_one("SELECT * FROM vps_text", json!({}), 0).await.expect("rows");
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[tokio::test]
    async fn the_index_catches_up_a_page_at_a_time_and_fills_itself_after_an_upgrade() {
        let s = store().await;
        // 1,008 VPSs; the 500th key, where the first page of the fill ends, needs escaping.
        let keys: Vec<String> = (0..499)
            .map(|i| format!("v{i:05}"))
            .chain(std::iter::once("v00499⟩\\x".to_string()))
            .chain((0..508).map(|i| format!("w{i:05}")))
            .collect();
        let rows: Vec<Value> = keys.iter().map(|k| json!({ "key": k, "name": format!("node-{k}") })).collect();
        s.execute(
            "BEGIN TRANSACTION;
             FOR $r IN $rows { CREATE type::record('vps', $r.key) CONTENT { name: $r.name, state: 'active',
                 template: 't', ips: [], created_at: time::now(), updated_at: time::now() }; };
             COMMIT TRANSACTION;",
            json!({ "rows": rows }),
        )
        .await
        .expect("rows");
        assert_eq!(s.index_vps_text().await.expect("index"), keys.len(), "every note taken, in pages");
        assert_eq!(found(&s, "node-w00507", "").await, vec!["w00507"]);
        let page = s.list_vps(&VpsQuery { q: "node".into(), ..VpsQuery::default() }).await.expect("search");
        assert!(page.capped && page.total == SEARCH_CAP, "every row is indexed: {} matches", page.total);

        // A store brought to schema 13 with its VPSs there already: they are indexed by key.
        s.execute("DELETE vps_text; DELETE vps_text_due; UPSERT vps_text_fill:state SET after = '';", json!({}))
            .await
            .expect("as after the upgrade");
        assert!(s.index_vps_text_if_idle().await.expect("fill") == keys.len());
        assert_eq!(found(&s, "node-w00507", "").await, vec!["w00507"]);
        assert_eq!(found(&s, "node-v00499", "").await, vec!["v00499⟩\\x"]);
        let left: Vec<Value> = s.query_one("SELECT * FROM vps_text_fill", json!({}), 0).await.expect("fill state");
        assert!(left.is_empty(), "the fill is done: {left:?}");
        assert_eq!(s.index_vps_text().await.expect("index"), 0);
    }
}
