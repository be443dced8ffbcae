//! Stripe payments: hardware upgrades (design.md §4 "Upgrade") and restores.
//!
//! - [`offers`]: upgrade offers (to another template, or +cores/+memory/+disk) with a price;
//!   declared in `appliance.toml`, stored in `upgrade_offer`, editable through the library
//!   functions here; which offers a VPS can buy, after an SCP capacity check of its AZ.
//! - [`links`]: signed, expiring, revocable, single-use upgrade links per VPS.
//! - [`checkout`]: the Stripe Checkout Session a pay button creates (async-stripe).
//! - [`fulfil`]: what a verified Stripe event does: record the payment, queue the resize,
//!   use up the link, tell an admin about refunds and disputes.
//! - [`restore`]: pay to restore a VPS suspended because its subscription lapsed (from the
//!   customer's portal).
//!
//! The HTTP side is `http::upgrade` (the customer page) and `http::stripe` (the webhook).

pub mod checkout;
pub mod fulfil;
pub mod links;
pub mod offers;
pub mod restore;

pub use links::{IssuedLink, LinkStatus, issue_link, revoke_link};
pub use offers::{Offer, create_offer, disable_offer, list_offers, update_offer};

/// The inbox source name of `POST /stripe/webhook` deliveries.
pub const INBOX_SOURCE: &str = "stripe-upgrades";

/// Metadata keys vmauto puts on a Checkout Session and its PaymentIntent.
pub mod meta {
    pub const LINK: &str = "vmauto_link";
    pub const VPS: &str = "vmauto_vps";
    pub const OFFER: &str = "vmauto_offer";
    pub const CORES: &str = "vmauto_cores";
    pub const MEMORY_MB: &str = "vmauto_memory_mb";
    pub const DISK_GB: &str = "vmauto_disk_gb";
    pub const TEMPLATE: &str = "vmauto_template";
}

/// `12.50 USD` from minor units (two decimals; zero-decimal currencies show as such).
pub fn format_price(minor: u64, currency: &str) -> String {
    const ZERO_DECIMAL: &[&str] = &["jpy", "krw", "vnd", "clp", "isk", "ugx", "xaf", "xof", "pyg", "rwf"];
    let code = currency.to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&currency) {
        format!("{minor} {code}")
    } else {
        format!("{}.{:02} {code}", minor / 100, minor % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_format_in_major_units() {
        assert_eq!(format_price(1250, "usd"), "12.50 USD");
        assert_eq!(format_price(5, "eur"), "0.05 EUR");
        assert_eq!(format_price(500, "jpy"), "500 JPY");
    }
}
