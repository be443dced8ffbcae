//! The Stripe Checkout Session behind a pay button, created against `stripe.api_base` with
//! `stripe.secret_key`: async-stripe's typed `CreateCheckoutSession` builds the request (path
//! and form), which is sent with the appliance's own HTTP client. async-stripe's client
//! would also bring its error type, whose deserializers reach most of Stripe's object model
//! (several megabytes of the binary); of the answer vmauto needs the session's id and URL,
//! or Stripe's error message.
//!
//! The session carries the link, the VPS, the offer and the target spec in `metadata` and in
//! `payment_intent_data.metadata` (so refunds and disputes can be traced back), and the link
//! id as `client_reference_id`. The webhook trusts these values because the event that
//! brings them back is signed by Stripe. One idempotency key per link, offer and ten-minute
//! window makes a double click answer the same session.

use std::collections::HashMap;
use std::time::Duration;

use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, ProductData,
};
use stripe_client_core::{RequestBuilder, StripeMethod, StripeRequest as _};

use super::links::LinkId;
use super::meta;
use super::offers::{Offer, Target};
use crate::config::StripeConfig;
use crate::lifecycle::Vps;

/// How long one call to Stripe may take.
const STRIPE_TIMEOUT: Duration = Duration::from_secs(20);

/// What vmauto reads of the created Checkout Session.
#[derive(serde::Deserialize)]
struct OpenedSession {
    id: String,
    url: Option<String>,
}

/// What vmauto reads of Stripe's error answer.
#[derive(serde::Deserialize)]
struct StripeErrorBody {
    error: StripeErrorDetail,
}

#[derive(serde::Deserialize)]
struct StripeErrorDetail {
    message: Option<String>,
}

/// A created session: where to send the customer.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub url: String,
}

/// Why a session could not be created; the message never holds the secret key.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("Stripe payments are not configured (stripe.enabled / stripe.secret_key)")]
    NotConfigured,
    #[error("Stripe refused the payment request: {0}")]
    Refused(String),
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
    #[error("Stripe answered without a payment page URL")]
    NoUrl,
}

/// What the session is for.
#[derive(Debug)]
pub struct CheckoutRequest<'a> {
    pub link_id: &'a LinkId,
    pub vps: &'a Vps,
    pub vps_name: &'a str,
    pub offer: &'a Offer,
    pub target: &'a Target,
    /// Where Stripe returns after payment (may hold `{CHECKOUT_SESSION_ID}`).
    pub success_url: String,
    pub cancel_url: String,
}

/// The metadata a session and its PaymentIntent carry.
pub fn metadata(req: &CheckoutRequest<'_>) -> HashMap<String, String> {
    let spec = req.target.spec;
    let mut m = HashMap::from([
        (meta::LINK.to_string(), req.link_id.to_string()),
        (meta::VPS.to_string(), req.vps.id.to_string()),
        (meta::OFFER.to_string(), req.offer.id.to_string()),
        (meta::CORES.to_string(), spec.cores.to_string()),
        (meta::MEMORY_MB.to_string(), spec.memory_mb.to_string()),
        (meta::DISK_GB.to_string(), spec.disk_gb.to_string()),
    ]);
    if let Some(t) = &req.target.template {
        m.insert(meta::TEMPLATE.to_string(), t.name.to_string());
    }
    m
}

/// The idempotency key of a pay request: link, offer and its terms, ten-minute window (a
/// changed price is a new request, never a reuse Stripe would refuse).
fn idempotency_key(req: &CheckoutRequest<'_>) -> String {
    use sha2::{Digest, Sha256};
    let window = chrono::Utc::now().timestamp() / 600;
    let o = req.offer;
    let h = Sha256::digest(
        format!("{}\0{}\0{}\0{}\0{}\0{window}", req.link_id, o.id, o.price, o.currency, o.name).as_bytes(),
    );
    format!("vmauto-upgrade-{}", hex::encode(&h[..16]))
}

/// One payment page to open: a single line item priced inline, the metadata it carries (on
/// the session and its PaymentIntent) and the idempotency key that makes a double click
/// answer the same session.
#[derive(Debug, Clone)]
pub struct PaymentPage {
    pub product: String,
    pub description: Option<String>,
    /// Minor units.
    pub amount: u64,
    pub currency: String,
    pub metadata: HashMap<String, String>,
    /// `client_reference_id`.
    pub reference: String,
    /// The PaymentIntent's description (what the customer's statement and the dashboard show).
    pub intent_description: String,
    pub idempotency_key: String,
    pub success_url: String,
    pub cancel_url: String,
}

/// Creates the Checkout Session (payment mode, one line item priced inline).
pub async fn create_session(config: &StripeConfig, req: &CheckoutRequest<'_>) -> Result<Session, CheckoutError> {
    let spec = req.target.spec;
    let page = PaymentPage {
        product: format!("{}: {}", req.vps_name, req.offer.name),
        description: Some(format!(
            "{} vCPU, {} GB memory, {} GB disk",
            spec.cores,
            spec.memory_mb.div_ceil(1024),
            spec.disk_gb
        )),
        amount: req.offer.price,
        currency: req.offer.currency.clone(),
        metadata: metadata(req),
        reference: req.link_id.to_string(),
        intent_description: format!("Upgrade of {}: {}", req.vps_name, req.offer.name),
        idempotency_key: idempotency_key(req),
        success_url: req.success_url.clone(),
        cancel_url: req.cancel_url.clone(),
    };
    open_payment_page(config, &page).await
}

/// Creates a Checkout Session in payment mode for `page`.
pub async fn open_payment_page(config: &StripeConfig, page: &PaymentPage) -> Result<Session, CheckoutError> {
    if !config.enabled || config.secret_key.is_empty() {
        return Err(CheckoutError::NotConfigured);
    }
    let currency: stripe_types::Currency =
        page.currency.parse().map_err(|_| CheckoutError::Refused(format!("currency {}", page.currency)))?;
    let mut product = ProductData::new(page.product.clone());
    product.description = page.description.clone();
    let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency);
    price.product_data = Some(product);
    price.unit_amount = Some(i64::try_from(page.amount).unwrap_or(i64::MAX));
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price_data = Some(price);
    item.quantity = Some(1);
    let mut intent = CreateCheckoutSessionPaymentIntentData::new();
    intent.metadata = Some(page.metadata.clone());
    intent.description = Some(page.intent_description.clone());
    let request = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Payment)
        .line_items(vec![item])
        .client_reference_id(page.reference.as_str())
        .metadata(page.metadata.clone())
        .payment_intent_data(intent)
        .success_url(page.success_url.clone())
        .cancel_url(page.cancel_url.clone())
        .build();
    let session = send(config, request, &page.idempotency_key).await?;
    let url = session.url.filter(|u| !u.is_empty()).ok_or(CheckoutError::NoUrl)?;
    Ok(Session { id: session.id, url })
}

/// Sends a Stripe API request as Stripe's own clients do: the secret key as a bearer token,
/// the API version the request types were generated for, the idempotency key, a form body.
async fn send(config: &StripeConfig, request: RequestBuilder, key: &str) -> Result<OpenedSession, CheckoutError> {
    let unreachable = |e: &dyn std::fmt::Display| CheckoutError::Unreachable(e.to_string());
    if key.is_empty() || key.len() > 255 {
        return Err(CheckoutError::Refused(format!("idempotency key of {} characters", key.len())));
    }
    let tls = crate::tls::verified_client_config("", "stripe").map_err(|e| unreachable(&e))?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(STRIPE_TIMEOUT)
        .build()
        .map_err(|e| unreachable(&e))?;
    let mut url = format!("{}/v1{}", config.api_base.trim_end_matches('/'), request.path);
    if let Some(query) = &request.query {
        url = format!("{url}?{query}");
    }
    let method = match request.method {
        StripeMethod::Get => reqwest::Method::GET,
        StripeMethod::Post => reqwest::Method::POST,
        StripeMethod::Delete => reqwest::Method::DELETE,
    };
    let mut call = client
        .request(method, url)
        .bearer_auth(config.secret_key.expose())
        .header("Stripe-Version", stripe_client_core::VERSION.as_str())
        .header("Idempotency-Key", key);
    if let Some(body) = request.body {
        call = call.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body);
    }
    let answer = call.send().await.map_err(|e| unreachable(&e.without_url()))?;
    let status = answer.status();
    let bytes = answer.bytes().await.map_err(|e| unreachable(&e.without_url()))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<StripeErrorBody>(&bytes).ok().and_then(|b| b.error.message);
        return Err(CheckoutError::Refused(format!(
            "{} (HTTP {})",
            message.as_deref().unwrap_or("no message"),
            status.as_u16()
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| unreachable(&format!("Stripe's answer could not be read: {e}")))
}
