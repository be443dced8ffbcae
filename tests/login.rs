//! Server tests of logging in: two-factor login and its attempt budget, lockout by address,
//! forwarded addresses, where a login returns to, secrets shown once, and live-update streams
//! ending with their session.

use vmauto::auth::LoginError;

use crate::common::TestApp;
use crate::ui::{PW, Session, attr, client, cookie_value, get, login, post, try_login, try_login_to, users};

#[actix_web::test]
async fn two_factor_login_with_codes_and_recovery_codes() {
    let t = TestApp::start().await;
    let base = t.app.base_url();
    let auth = users(&t).await;
    let s = login(&base, "root").await;
    let http = client();
    let page = |path: &'static str, form: Vec<(&'static str, String)>, cookie: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http.post(format!("{base}{path}")).header("cookie", cookie).form(&form).send().await.expect("post");
            (
                r.status().as_u16(),
                r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
                r.text().await.unwrap_or_default(),
            )
        }
    };
    let (status, _, html) = page("/account/2fa/begin", vec![("_csrf", s.csrf.clone())], s.cookie.clone()).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"totp-secret\">"), "the set-up page shows the key");
    let (_, loc, _) =
        page("/account/2fa/confirm", vec![("_csrf", s.csrf.clone()), ("code", "000000".into())], s.cookie.clone())
            .await;
    assert!(loc.contains("err="), "a wrong code does not turn it on: {loc}");
    let (_, _, html) = page("/account/2fa/begin", vec![("_csrf", s.csrf.clone())], s.cookie.clone()).await;
    let secret =
        html.split("id=\"totp-secret\">").nth(1).and_then(|x| x.split('<').next()).expect("secret").to_string();
    let bytes = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
    let code = || vmauto::auth::totp(&bytes, "root").expect("totp").generate_current().expect("code");
    let (status, _, html) =
        page("/account/2fa/confirm", vec![("_csrf", s.csrf.clone()), ("code", code())], s.cookie.clone()).await;
    assert_eq!(status, 200);
    let recovery: Vec<String> =
        html.split("<li><code>").skip(1).filter_map(|x| x.split('<').next().map(str::to_owned)).collect();
    assert_eq!(recovery.len(), vmauto::auth::RECOVERY_CODES, "recovery codes shown once");
    assert!(recovery.iter().all(|c| c.replace('-', "").len() * 4 >= 80), "80 bits each: {recovery:?}");

    // The password alone now gives only a pending session.
    let (status, location, pending) = try_login(&base, "root", PW).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/login/2fa"), "{location}");
    let pending = pending.expect("pending session");
    assert_eq!(get(&base, &pending, "/").await.0, 303, "no page before the second factor");
    let r = http.get(format!("{base}/api/v1/me")).header("cookie", &pending.cookie).send().await.expect("api");
    assert_eq!(r.status().as_u16(), 401, "nor the API");
    let csrf = {
        let r = http.get(format!("{base}/login/2fa")).header("cookie", &pending.cookie).send().await.expect("page");
        attr(&r.text().await.expect("html"), "name=\"_csrf\" value=\"")
    };
    let (_, loc, _) = page(
        "/login/2fa",
        vec![("_csrf", csrf.clone()), ("code", "123456".into()), ("next", "/".into())],
        pending.cookie.clone(),
    )
    .await;
    assert!(loc.contains("error="), "a wrong code is refused: {loc}");
    let used = code();
    let r = http
        .post(format!("{base}/login/2fa"))
        .header("cookie", &pending.cookie)
        .form(&[("_csrf", csrf.clone()), ("code", used.clone()), ("next", "/".into())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("/"));
    let renewed = cookie_value(&r, "vmauto_session").expect("a new session cookie after the second factor");
    let renewed = Session { cookie: format!("vmauto_session={renewed}"), csrf: String::new() };
    assert_ne!(renewed.cookie, pending.cookie, "the session is renewed");
    assert_eq!(get(&base, &renewed, "/").await.0, 200, "the code completes the login");
    assert_eq!(get(&base, &pending, "/").await.0, 303, "the cookie from before the second factor is worth nothing");
    // Two-factor cannot be set up again (moved to another app) while it is on.
    let (_, loc, _) = page("/account/2fa/begin", vec![("_csrf", s.csrf.clone())], s.cookie.clone()).await;
    assert!(loc.contains("err=") && loc.contains("turn+it+off"), "re-enrolment needs the current code: {loc}");
    // The same code again (a replay) is refused.
    let (_, _, again) = try_login(&base, "root", PW).await;
    let again = again.expect("pending");
    let csrf2 = {
        let r = http.get(format!("{base}/login/2fa")).header("cookie", &again.cookie).send().await.expect("page");
        attr(&r.text().await.expect("html"), "name=\"_csrf\" value=\"")
    };
    let (_, loc, _) =
        page("/login/2fa", vec![("_csrf", csrf2), ("code", used), ("next", "/".into())], again.cookie.clone()).await;
    assert!(loc.contains("error="), "a used code does not work twice: {loc}");

    // A recovery code works once.
    for (attempt, expect_ok) in [(1, true), (2, false)] {
        let (_, _, p) = try_login(&base, "root", PW).await;
        let p = p.expect("pending");
        let csrf = {
            let r = http.get(format!("{base}/login/2fa")).header("cookie", &p.cookie).send().await.expect("page");
            attr(&r.text().await.expect("html"), "name=\"_csrf\" value=\"")
        };
        let (_, loc, _) = page(
            "/login/2fa",
            vec![("_csrf", csrf), ("code", recovery[0].clone()), ("next", "/".into())],
            p.cookie.clone(),
        )
        .await;
        assert_eq!(loc == "/", expect_ok, "recovery code use {attempt}: {loc}");
    }

    // An admin resets it: the password alone works again.
    auth.reset_totp("root").await.expect("reset");
    let (_, location, _) = try_login(&base, "root", PW).await;
    assert_eq!(location, "/vps");
}

#[actix_web::test]
async fn after_login_only_a_path_on_this_site_is_followed() {
    let t = TestApp::start().await;
    let base = t.app.base_url();
    users(&t).await;
    // Browsers drop the tab and read `/\` as `//`: each of these would leave the site.
    for next in ["/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example/"] {
        let (status, location, _) = try_login_to(&base, "root", PW, next).await;
        assert_eq!((status, location.as_str()), (303, "/"), "next = {next:?}");
    }
    let (status, location, _) = try_login_to(&base, "root", PW, "/activity?level=warning").await;
    assert_eq!((status, location.as_str()), (303, "/activity?level=warning"));
}

#[actix_web::test]
async fn guessing_from_one_address_does_not_lock_the_user_out_elsewhere() {
    let t = TestApp::start_with(|c| {
        c.security.login_max_failures = 3;
        c.security.login_max_failures_per_user = 8;
    })
    .await;
    let auth = users(&t).await;
    for _ in 0..3 {
        assert!(auth.login("root", "guess", "198.51.100.7").await.expect("login").is_err());
    }
    assert!(
        matches!(auth.login("root", PW, "198.51.100.7").await.expect("login"), Err(LoginError::Blocked(_))),
        "the guessing address is blocked even with the right password"
    );
    assert!(auth.login("root", PW, "192.0.2.10").await.expect("login").is_ok(), "the admin elsewhere is not");
    // The backstop: failures from many addresses lock the account itself.
    for i in 0..8 {
        let _ = auth.login("ops", "guess", &format!("203.0.113.{i}")).await.expect("login");
    }
    assert!(matches!(auth.login("ops", PW, "192.0.2.11").await.expect("login"), Err(LoginError::LockedUntil(_))));
}

#[actix_web::test]
async fn live_update_streams_are_capped_and_end_with_their_session() {
    let t = TestApp::start().await;
    let base = t.app.base_url();
    users(&t).await;
    let s = login(&base, "root").await;
    let open =
        || async { client().get(format!("{base}/events")).header("cookie", &s.cookie).send().await.expect("events") };
    let mut streams = Vec::new();
    for _ in 0..vmauto::http::events::MAX_STREAMS_PER_USER {
        let r = open().await;
        assert_eq!(r.status().as_u16(), 200);
        streams.push(r);
    }
    let fifth = open().await;
    assert_eq!(fifth.status().as_u16(), 429, "one stream more than the cap for the same user");
    // Closing one frees its place (once the server notices, at its next write).
    drop(streams.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let again = loop {
        let r = open().await;
        if r.status().as_u16() == 200 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "a closed stream's place is never freed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    streams.push(again);
    // Logging out ends the open streams: each reaches its end.
    assert_eq!(post(&base, &s, "/logout", &[("_csrf", &s.csrf)]).await.0, 303);
    let mut stream = streams.pop().expect("a stream");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended with its session");
}

#[actix_web::test]
async fn new_secrets_are_shown_once_on_the_page_never_in_an_address() {
    let t = TestApp::start().await;
    let base = t.app.base_url();
    users(&t).await;
    let s = login(&base, "root").await;
    for (path, form) in [
        ("/settings/tokens", vec![("name", "robot"), ("role", "viewer")]),
        ("/settings/users", vec![("username", "newbie"), ("role", "viewer")]),
        ("/settings/users/view", vec![("change", "reset_password")]),
    ] {
        let mut form = form;
        form.push(("_csrf", s.csrf.as_str()));
        let r =
            client().post(format!("{base}{path}")).header("cookie", &s.cookie).form(&form).send().await.expect("post");
        assert_eq!(r.status().as_u16(), 200, "{path}: answered with a page, not a redirect");
        assert!(r.headers().get("location").is_none(), "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        let html = r.text().await.expect("html");
        let secret = attr(&html, "id=\"shown-once-value\">");
        let secret = secret.split('<').next().unwrap_or_default();
        assert!(secret.len() >= 16, "{path}: the secret is on the page: {html}");
    }
}

/// Logs in with an `X-Forwarded-For` header; answers whether a session came back.
async fn login_forwarded(base: &str, user: &str, password: &str, forwarded_for: &str) -> bool {
    let http = client();
    let page = http.get(format!("{base}/login")).send().await.expect("login page");
    let login_cookie = cookie_value(&page, "vmauto_login").expect("login cookie");
    let csrf = attr(&page.text().await.expect("html"), "name=\"_csrf\" value=\"");
    let resp = http
        .post(format!("{base}/login"))
        .header("cookie", format!("vmauto_login={login_cookie}"))
        .header("x-forwarded-for", forwarded_for)
        .form(&[("username", user), ("password", password), ("_csrf", csrf.as_str()), ("next", "/")])
        .send()
        .await
        .expect("login");
    cookie_value(&resp, "vmauto_session").is_some()
}

#[actix_web::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    // Behind a trusted proxy (loopback, the default), each client address counts alone.
    let t = TestApp::start_with(|c| c.security.login_max_failures = 3).await;
    let base = t.app.base_url();
    users(&t).await;
    for _ in 0..3 {
        assert!(!login_forwarded(&base, "root", "guess", "198.51.100.1").await);
    }
    assert!(!login_forwarded(&base, "root", PW, "198.51.100.1").await, "the guessing client is blocked");
    assert!(login_forwarded(&base, "root", PW, "198.51.100.2").await, "another client behind the proxy is not");

    // Without trusted proxies, a client cannot dodge its block by writing the header.
    let t = TestApp::start_with(|c| {
        c.security.login_max_failures = 3;
        c.server.trusted_proxies = Vec::new();
    })
    .await;
    let base = t.app.base_url();
    users(&t).await;
    for i in 0..3 {
        assert!(!login_forwarded(&base, "root", "guess", &format!("203.0.113.{i}")).await);
    }
    assert!(
        !login_forwarded(&base, "root", PW, "203.0.113.99").await,
        "the header from an untrusted peer is ignored: the peer itself is blocked"
    );
}

#[actix_web::test]
async fn wrong_second_factor_codes_are_limited_per_user_across_logins() {
    let t = TestApp::start().await;
    let auth = users(&t).await;
    let setup = auth.begin_totp("root").await.expect("begin");
    let bytes = totp_rs::Secret::Encoded(setup.secret.clone()).to_bytes().expect("base32");
    let code = || vmauto::auth::totp(&bytes, "root").expect("totp").generate_current().expect("code");
    assert!(auth.confirm_totp("root", &code()).await.expect("confirm").is_some());
    let mut locked = None;
    for attempt in 0..vmauto::auth::MFA_MAX_FAILURES {
        // A fresh login each time: the budget is the user's, not the session's.
        let (_, p) = auth.login("root", PW, "192.0.2.50").await.expect("login").expect("password ok");
        match auth.check_second_factor(&p.session_hash, "root", "000000").await.expect("check") {
            vmauto::auth::SecondFactor::Wrong => {}
            vmauto::auth::SecondFactor::Locked(t) => {
                locked = Some((attempt, t));
                break;
            }
            vmauto::auth::SecondFactor::Passed => panic!("a wrong code passed"),
        }
    }
    let (attempt, _) = locked.expect("locked within the budget");
    assert_eq!(attempt + 1, vmauto::auth::MFA_MAX_FAILURES);
    let (_, p) = auth.login("root", PW, "192.0.2.50").await.expect("login").expect("password ok");
    assert!(
        matches!(
            auth.check_second_factor(&p.session_hash, "root", &code()).await.expect("check"),
            vmauto::auth::SecondFactor::Locked(_)
        ),
        "even the right code waits out the lock"
    );
}
