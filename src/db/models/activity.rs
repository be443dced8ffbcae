//! The `activity` table: the appliance's log of what happened, shown on the activity page.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
