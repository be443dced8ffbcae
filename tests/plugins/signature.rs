//! Every signature scheme with valid, invalid, missing, expired and rotated keys. The
//! Stripe header is also made by Stripe's own Python library (in a venv under
//! `$HOME/.cache/vmauto/`, created on first use), and the GHL Ed25519 check uses the test
//! vector of webhooks.md.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use vmauto::billing::signature::{SignatureError, WebhookRequest, verify};
use vmauto::config::{Secret, SignatureScheme, SourceConfig};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn source(scheme: SignatureScheme) -> SourceConfig {
    SourceConfig { plugin: "ghl-workflow".into(), signature: scheme, ..SourceConfig::default() }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn check(
    source: &SourceConfig,
    path_token: Option<&str>,
    hs: &[(&str, &str)],
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<vmauto::billing::signature::Verified, SignatureError> {
    let h = headers(hs);
    verify(source, &WebhookRequest { path_token, headers: &h, body }, now, 300)
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

// ---- none ----

#[test]
fn none_accepts_anything_but_still_checks_a_present_ghl_signature() {
    let mut s = source(SignatureScheme::None);
    assert!(check(&s, None, &[], b"{}", now()).is_ok());
    s.public_keys = vec![GHL_TEST_SPKI.into()];
    let err = check(&s, None, &[("x-ghl-signature", GHL_TEST_SIG)], b"{\"tampered\":true}", now()).unwrap_err();
    assert_eq!(err.code(), "signature_mismatch");
}

// ---- shared token ----

#[test]
fn shared_token_in_path_header_and_body() {
    let mut s = source(SignatureScheme::SharedToken);
    s.token = Secret::new("s3cret-token");
    // path
    assert!(check(&s, Some("s3cret-token"), &[], b"{}", now()).is_ok());
    assert_eq!(check(&s, Some("s3cret-tokeN"), &[], b"{}", now()).unwrap_err(), SignatureError::BadToken);
    assert_eq!(check(&s, Some("s3cret"), &[], b"{}", now()).unwrap_err(), SignatureError::BadToken);
    assert!(matches!(check(&s, None, &[], b"{}", now()).unwrap_err(), SignatureError::MissingToken { .. }));
    // header
    s.token_in = "header".into();
    s.token_field = "X-Vmauto-Token".into();
    assert!(check(&s, None, &[("x-vmauto-token", "s3cret-token")], b"{}", now()).is_ok());
    assert_eq!(check(&s, None, &[("x-vmauto-token", "wrong")], b"{}", now()).unwrap_err(), SignatureError::BadToken);
    let err = check(&s, None, &[], b"{}", now()).unwrap_err();
    assert!(err.to_string().contains("header X-Vmauto-Token"), "{err}");
    // body field (GHL's standard Webhook action: customData)
    s.token_in = "body".into();
    s.token_field = "customData.shared_token".into();
    let body = super::support::fixture("ghl-workflow-subscribe.json");
    assert!(check(&s, None, &[], &body, now()).is_ok());
    let err = check(&s, None, &[], &super::support::fixture("ghl-workflow-cancel.json"), now()).unwrap_err();
    assert!(matches!(err, SignatureError::MissingToken { .. }), "{err:?}");
    // rotation: a new token simply replaces the old one
    s.token = Secret::new("rotated");
    assert_eq!(check(&s, None, &[], &body, now()).unwrap_err(), SignatureError::BadToken);
}

// ---- HMAC-SHA256 ----

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn hmac_sha256_hex_and_base64() {
    let body = br#"{"event":"subscribe"}"#;
    let mut s = source(SignatureScheme::HmacSha256);
    s.hmac_secret = Secret::new("hmac-key");
    s.token_field = "X-Signature".into();
    let sig = hmac_hex("hmac-key", body);
    assert!(check(&s, None, &[("x-signature", &sig)], body, now()).is_ok());
    assert!(check(&s, None, &[("x-signature", &format!("sha256={sig}"))], body, now()).is_ok());
    let err = check(&s, None, &[("x-signature", &sig)], b"{\"event\":\"cancel\"}", now()).unwrap_err();
    assert_eq!(err.code(), "signature_mismatch");
    let err = check(&s, None, &[("x-signature", &hmac_hex("old-key", body))], body, now()).unwrap_err();
    assert_eq!(err.code(), "signature_mismatch");
    assert_eq!(check(&s, None, &[], body, now()).unwrap_err().code(), "missing_signature");
    assert_eq!(check(&s, None, &[("x-signature", "zz")], body, now()).unwrap_err().code(), "malformed_signature");
    s.hmac_encoding = "base64".into();
    let b64 = B64.encode(hex::decode(&sig).unwrap());
    assert!(check(&s, None, &[("x-signature", &b64)], body, now()).is_ok());
}

// ---- GHL Ed25519 (webhooks.md test vector) ----

const GHL_TEST_SPKI: &str = "MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
const GHL_TEST_RAW_HEX: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
const GHL_TEST_BODY: &str =
    r#"{"type":"OrderStatusUpdate","locationId":"loc_123","webhookId":"wh_1","timestamp":"2026-01-01T00:00:00.000Z"}"#;
const GHL_TEST_SIG: &str = "a8IUdXdWPLf7xEgcYFJvFoIgsdYnZWycEZdPaIr06ddsGpAAyGFI9On3S8xDeL0dIOKEYGT8BM5r+G6iiKN2DQ==";

fn pem(spki_b64: &str) -> String {
    format!("-----BEGIN PUBLIC KEY-----\n{spki_b64}\n-----END PUBLIC KEY-----\n")
}

#[test]
fn ghl_ed25519_test_vector_in_every_key_form() {
    let body = GHL_TEST_BODY.as_bytes();
    for key in [pem(GHL_TEST_SPKI), GHL_TEST_SPKI.to_string(), GHL_TEST_RAW_HEX.to_string()] {
        let mut s = source(SignatureScheme::GhlEd25519);
        s.public_keys = vec![key.clone()];
        let v =
            check(&s, None, &[("X-GHL-Signature", GHL_TEST_SIG)], body, now()).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(v.ghl_signature_verified);
        assert_eq!(v.key_index, Some(0));
    }
}

#[test]
fn ghl_ed25519_invalid_missing_and_rotated_keys() {
    let body = GHL_TEST_BODY.as_bytes();
    // A second key (seed 0x42…) signs the same body.
    let other = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let other_sig = B64.encode(other.sign(body).to_bytes());
    let other_pub = hex::encode(other.verifying_key().to_bytes());
    let mut s = source(SignatureScheme::GhlEd25519);
    s.public_keys = vec![pem(GHL_TEST_SPKI)];
    // invalid: tampered body, wrong key
    let tampered = GHL_TEST_BODY.replace("wh_1", "wh_2");
    assert_eq!(
        check(&s, None, &[("x-ghl-signature", GHL_TEST_SIG)], tampered.as_bytes(), now()).unwrap_err().code(),
        "signature_mismatch"
    );
    assert_eq!(
        check(&s, None, &[("x-ghl-signature", &other_sig)], body, now()).unwrap_err().code(),
        "signature_mismatch"
    );
    // missing and malformed
    assert_eq!(check(&s, None, &[], body, now()).unwrap_err().code(), "missing_signature");
    assert_eq!(check(&s, None, &[("x-ghl-signature", "AAAA")], body, now()).unwrap_err().code(), "malformed_signature");
    // rotation: both keys configured, each signature verifies with its own key
    s.public_keys = vec![other_pub.clone(), pem(GHL_TEST_SPKI)];
    assert_eq!(check(&s, None, &[("x-ghl-signature", GHL_TEST_SIG)], body, now()).unwrap().key_index, Some(1));
    assert_eq!(check(&s, None, &[("x-ghl-signature", &other_sig)], body, now()).unwrap().key_index, Some(0));
    // no key configured
    s.public_keys.clear();
    assert_eq!(
        check(&s, None, &[("x-ghl-signature", GHL_TEST_SIG)], body, now()).unwrap_err().code(),
        "signature_not_configured"
    );
    s.public_keys = vec!["not a key".into()];
    assert_eq!(
        check(&s, None, &[("x-ghl-signature", GHL_TEST_SIG)], body, now()).unwrap_err().code(),
        "bad_public_key"
    );
}

#[test]
fn a_shared_token_source_also_verifies_a_present_ghl_signature() {
    let body = GHL_TEST_BODY.as_bytes();
    let mut s = source(SignatureScheme::SharedToken);
    s.token = Secret::new("t0k3n");
    s.public_keys = vec![pem(GHL_TEST_SPKI)];
    let v = check(&s, Some("t0k3n"), &[("x-ghl-signature", GHL_TEST_SIG)], body, now()).unwrap();
    assert!(v.ghl_signature_verified);
    assert!(!check(&s, Some("t0k3n"), &[], body, now()).unwrap().ghl_signature_verified);
    let err = check(&s, Some("t0k3n"), &[("x-ghl-signature", GHL_TEST_SIG)], b"{}", now()).unwrap_err();
    assert_eq!(err.code(), "signature_mismatch");
}

// ---- GHL legacy RSA ----

#[test]
fn ghl_rsa_valid_invalid_missing_and_rotated() {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::signature::{SignatureEncoding, Signer};
    let mut rng = rand::thread_rng();
    let old = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let new = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let pem_of = |k: &rsa::RsaPrivateKey| k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let body = GHL_TEST_BODY.as_bytes();
    let sign = |k: &rsa::RsaPrivateKey, b: &[u8]| B64.encode(SigningKey::<Sha256>::new(k.clone()).sign(b).to_bytes());
    let mut s = source(SignatureScheme::GhlRsa);
    s.public_keys = vec![pem_of(&old)];
    assert_eq!(check(&s, None, &[("x-wh-signature", &sign(&old, body))], body, now()).unwrap().key_index, Some(0));
    assert_eq!(
        check(&s, None, &[("x-wh-signature", &sign(&old, b"{}"))], body, now()).unwrap_err().code(),
        "signature_mismatch"
    );
    assert_eq!(
        check(&s, None, &[("x-wh-signature", &sign(&new, body))], body, now()).unwrap_err().code(),
        "signature_mismatch"
    );
    assert_eq!(check(&s, None, &[], body, now()).unwrap_err().code(), "missing_signature");
    s.public_keys = vec![pem_of(&old), pem_of(&new)];
    assert_eq!(check(&s, None, &[("x-wh-signature", &sign(&new, body))], body, now()).unwrap().key_index, Some(1));
    // An Ed25519 source with an RSA key too accepts the legacy header while GHL still sends it.
    let mut both = source(SignatureScheme::GhlEd25519);
    both.public_keys = vec![pem(GHL_TEST_SPKI), pem_of(&new)];
    assert!(check(&both, None, &[("x-wh-signature", &sign(&new, body))], body, now()).is_ok());
    assert!(check(&both, None, &[("x-ghl-signature", GHL_TEST_SIG)], body, now()).is_ok());
}

// ---- Stripe ----

const STRIPE_VECTOR_BODY: &str = r#"{"id":"evt_test_1","object":"event","type":"checkout.session.completed"}"#;
const STRIPE_VECTOR_HEADER: &str = "t=1735689600,v1=cebff72dc126be60c1b851a23bc0e96c1cfe11235b5178dffb5ab36aacb3a8f6";

fn stripe_source(secrets: &[&str]) -> SourceConfig {
    let mut s = source(SignatureScheme::Stripe);
    s.secrets = secrets.iter().map(|x| Secret::new(*x)).collect();
    s
}

#[test]
fn stripe_test_vector_rotation_and_expiry() {
    let at = Utc.timestamp_opt(1735689600 + 10, 0).unwrap();
    let body = STRIPE_VECTOR_BODY.as_bytes();
    let s = stripe_source(&["whsec_test_secret"]);
    let v = check(&s, None, &[("Stripe-Signature", STRIPE_VECTOR_HEADER)], body, at).unwrap();
    assert_eq!(v.signed_at, Some(1735689600));
    // Rotation header from webhooks.md: any v1 may match; v0 is ignored.
    let rotated = "t=1735689600,v1=0000000000000000000000000000000000000000000000000000000000000000,v1=cebff72dc126be60c1b851a23bc0e96c1cfe11235b5178dffb5ab36aacb3a8f6,v0=deadbeef";
    assert!(check(&s, None, &[("stripe-signature", rotated)], body, at).is_ok());
    // Rotated secrets: the second configured secret matches.
    let s2 = stripe_source(&["whsec_new", "whsec_test_secret"]);
    assert_eq!(check(&s2, None, &[("stripe-signature", STRIPE_VECTOR_HEADER)], body, at).unwrap().key_index, Some(1));
    // Invalid, missing, malformed, expired.
    assert_eq!(
        check(&stripe_source(&["whsec_other"]), None, &[("stripe-signature", STRIPE_VECTOR_HEADER)], body, at)
            .unwrap_err()
            .code(),
        "signature_mismatch"
    );
    assert_eq!(
        check(&s, None, &[("stripe-signature", STRIPE_VECTOR_HEADER)], b"{}", at).unwrap_err().code(),
        "signature_mismatch"
    );
    assert_eq!(check(&s, None, &[], body, at).unwrap_err().code(), "missing_signature");
    assert_eq!(check(&s, None, &[("stripe-signature", "v1=abc")], body, at).unwrap_err().code(), "malformed_signature");
    assert_eq!(
        check(&s, None, &[("stripe-signature", "t=1735689600,v0=abc")], body, at).unwrap_err().code(),
        "malformed_signature"
    );
    let err = check(&s, None, &[("stripe-signature", STRIPE_VECTOR_HEADER)], body, Utc::now()).unwrap_err();
    assert!(matches!(err, SignatureError::Expired { tolerance_secs: 300, .. }), "{err:?}");
    // A tolerance of 0 disables the age check, as in Stripe's libraries.
    let h = headers(&[("stripe-signature", STRIPE_VECTOR_HEADER)]);
    assert!(verify(&s, &WebhookRequest { path_token: None, headers: &h, body }, Utc::now(), 0).is_ok());
    assert_eq!(
        check(&stripe_source(&[]), None, &[("stripe-signature", STRIPE_VECTOR_HEADER)], body, at).unwrap_err().code(),
        "signature_not_configured"
    );
}

/// The Python interpreter of a venv with Stripe's library (made on first use; a machine that
/// cannot make it fails this test, saying why, rather than skipping it).
fn stripe_python() -> PathBuf {
    crate::common::python::venv("stripe-venv", &["stripe==16.1.0"], "stripe").join("bin/python")
}

#[test]
fn stripe_signature_made_by_stripes_own_library() {
    let python = stripe_python();
    // Stripe's signing code (stripe.WebhookSignature), as its test helpers use it.
    let script = r#"
import sys, time, stripe
from stripe import WebhookSignature
payload = sys.stdin.read()
secret, t = sys.argv[1], int(sys.argv[2])
sig = WebhookSignature._compute_signature("%d.%s" % (t, payload), secret)
header = "t=%d,v1=%s" % (t, sig)
# Stripe's own verifier must accept what it signed.
WebhookSignature.verify_header(payload, header, secret, tolerance=None)
print(header)
"#;
    let body = super::support::fixture("stripe-subscription-created.json");
    let t = Utc::now().timestamp();
    let out = {
        use std::io::Write;
        let mut child = Command::new(&python)
            .args(["-c", script, "whsec_vmauto_e2e", &t.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python");
        child.stdin.take().unwrap().write_all(&body).unwrap();
        child.wait_with_output().expect("python output")
    };
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let header = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let s = stripe_source(&["whsec_old", "whsec_vmauto_e2e"]);
    let v = check(&s, None, &[("Stripe-Signature", &header)], &body, Utc::now()).expect("Stripe's signature verifies");
    assert_eq!((v.key_index, v.signed_at), (Some(1), Some(t)));
    let err = check(&s, None, &[("Stripe-Signature", &header)], &body, Utc::now() + chrono::Duration::seconds(301))
        .unwrap_err();
    assert_eq!(err.code(), "signature_expired");
}
