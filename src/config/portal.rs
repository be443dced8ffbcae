//! `[portal]`: the customer's own page, opened by a signed link (`/my/<token>`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// Put the portal link in the "VPS ready" email and the `vps_ready` outgoing webhook, and
    /// in the customer's warnings before a suspension or deletion. Links can be issued by an
    /// admin either way.
    pub enabled: bool,
    /// Days a portal link stays valid (an admin can renew it).
    pub link_ttl_days: u32,
    /// Requests one link may make in a minute (one client address: five times as many).
    pub requests_per_minute: u32,
    /// Minutes a console session may stay open.
    pub console_minutes: u32,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self { enabled: false, link_ttl_days: 30, requests_per_minute: 60, console_minutes: 30 }
    }
}

impl PortalConfig {
    /// Checks the values; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.link_ttl_days == 0 || self.link_ttl_days > 3650 {
            return Err(format!("portal.link_ttl_days: {} must be between 1 and 3650", self.link_ttl_days));
        }
        if self.requests_per_minute < 10 {
            return Err(format!(
                "portal.requests_per_minute: {} is too few for a person to use the page; use at least 10",
                self.requests_per_minute
            ));
        }
        if self.console_minutes == 0 || self.console_minutes > 24 * 60 {
            return Err(format!("portal.console_minutes: {} must be between 1 and 1440", self.console_minutes));
        }
        Ok(())
    }
}
