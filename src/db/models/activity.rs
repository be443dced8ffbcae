//! The `activity` table: the appliance's log of what happened, shown on the activity page.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Page;
use crate::db::Store;

/// How much an activity row matters: one spelling everywhere, so the activity filter finds
/// every row of a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub const ALL: [Self; 4] = [Self::Info, Self::Warning, Self::Error, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }

    /// Reads a level as a filter or a row gives it (`warn` is the old spelling of `warning`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warning),
            "error" => Some(Self::Error),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

impl Store {
    /// Appends to the activity log.
    pub async fn record_activity(
        &self,
        level: Level,
        actor: &str,
        subject: Option<&str>,
        message: &str,
        data: Value,
    ) -> anyhow::Result<()> {
        self.execute(
            "CREATE activity CONTENT { at: time::now(), level: $level, actor: $actor, subject: $subject,
                message: $message, data: $data }",
            json!({ "level": level.as_str(), "actor": actor, "subject": subject, "message": message, "data": data }),
        )
        .await
    }
}

/// Filters of the activity log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActivityQuery {
    /// `info`, `warning`, `error`, `critical` or empty for all (`warn` is read as `warning`).
    #[serde(default)]
    pub level: String,
    /// Text in the message or the actor.
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: u64,
}

/// One row of the activity log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRow {
    pub at: String,
    pub level: Level,
    pub actor: String,
    /// The record it is about (a VPS key, a template name, …), when there is one.
    pub subject: Option<String>,
    pub message: String,
    /// Details, as the writer gave them.
    pub data: Value,
}

/// The fields of an activity page's rows.
pub(super) const ACTIVITY_FIELDS: &str = "<string>at AS at, level, actor, subject, message, data";

/// The `WHERE` clause (or nothing) and bindings of an activity page's filters. The level is
/// written into the clause (one of four known words): the store then counts its rows from an
/// index alone, where a bound level makes it fetch every row of the level; the page is a
/// range of `activity_level_at`, newest first, either way.
pub(super) fn activity_filter(query: &ActivityQuery) -> anyhow::Result<(String, Value)> {
    let mut conds = Vec::new();
    match query.level.trim() {
        "" => {}
        l => {
            let level = Level::parse(l)
                .ok_or_else(|| anyhow::anyhow!("unknown activity level {l:?}: use info, warning, error or critical"))?;
            conds.push(format!("level = '{}'", level.as_str()));
        }
    }
    let q = query.q.trim().to_lowercase();
    if !q.is_empty() {
        conds.push(
            "(string::contains(string::lowercase(message), $q) OR string::contains(string::lowercase(actor), $q))"
                .to_string(),
        );
    }
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    Ok((clause, json!({ "q": q })))
}

impl Store {
    /// One page of the activity log, newest first.
    pub async fn activity_page(&self, query: &ActivityQuery) -> anyhow::Result<Page<ActivityRow>> {
        let (clause, bindings) = activity_filter(query)?;
        super::page_of(self, "activity", ACTIVITY_FIELDS, &clause, bindings, "at DESC", query.page).await
    }
}
