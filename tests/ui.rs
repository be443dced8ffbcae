//! Server tests of the admin UI and the JSON API: login, sessions (expiry, logout
//! everywhere), lockout, CSRF, the role rule of every route, API tokens, security headers,
//! escaping, and the admin actions reaching the lifecycle.

use reqwest::redirect::Policy;
use serde_json::{Value, json};
use vmauto::auth::{Auth, Role};
use vmauto::sim::SimConfig;

use crate::common::{Stack, TestApp};

pub(crate) const PW: &str = "a long enough password";

/// A browser-like session: its cookie and CSRF token.
pub(crate) struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().expect("client")
}

pub(crate) fn cookie_value(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().split_once('=').map(|x| x.1).unwrap_or_default().to_string())
}

pub(crate) fn attr(html: &str, marker: &str) -> String {
    html.split(marker).nth(1).and_then(|s| s.split('"').next()).unwrap_or_default().to_string()
}

/// Logs in through the form; answers the status of the POST, its Location and the session.
pub(crate) async fn try_login(base: &str, user: &str, password: &str) -> (u16, String, Option<Session>) {
    try_login_to(base, user, password, "/vps").await
}

/// Logs in with `next` as the page to return to.
pub(crate) async fn try_login_to(base: &str, user: &str, password: &str, next: &str) -> (u16, String, Option<Session>) {
    let http = client();
    let page = http.get(format!("{base}/login")).send().await.expect("login page");
    let login_cookie = cookie_value(&page, "vmauto_login").expect("login cookie");
    let csrf = attr(&page.text().await.expect("html"), "name=\"_csrf\" value=\"");
    let resp = http
        .post(format!("{base}/login"))
        .header("cookie", format!("vmauto_login={login_cookie}"))
        .form(&[("username", user), ("password", password), ("_csrf", csrf.as_str()), ("next", next)])
        .send()
        .await
        .expect("login");
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let Some(session) = cookie_value(&resp, "vmauto_session") else { return (status, location, None) };
    let cookie = format!("vmauto_session={session}");
    let home = http.get(format!("{base}/")).header("cookie", &cookie).send().await.expect("home");
    let csrf = attr(&home.text().await.expect("html"), "data-csrf=\"");
    (status, location, Some(Session { cookie, csrf }))
}

pub(crate) async fn login(base: &str, user: &str) -> Session {
    let (status, location, session) = try_login(base, user, PW).await;
    assert_eq!((status, location.as_str()), (303, "/vps"), "login of {user}");
    session.expect("session cookie")
}

pub(crate) async fn get(base: &str, s: &Session, path: &str) -> (u16, String) {
    let r = client().get(format!("{base}{path}")).header("cookie", &s.cookie).send().await.expect("get");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

pub(crate) async fn post(base: &str, s: &Session, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = client().post(format!("{base}{path}")).header("cookie", &s.cookie).form(form).send().await.expect("post");
    let status = r.status().as_u16();
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, location)
}

/// A POST route, a form for it, and the least role allowed.
type Action = (&'static str, Vec<(&'static str, &'static str)>, Role);

pub(crate) async fn users(app: &TestApp) -> Auth {
    let auth = app.app.state.auth.clone();
    for (name, role) in [("root", Role::Admin), ("ops", Role::Operator), ("view", Role::Viewer)] {
        auth.add_user(name, PW, role).await.expect("user added");
    }
    auth
}

#[actix_web::test]
async fn login_sessions_expire_end_everywhere_and_lock_out() {
    let t = TestApp::start_with(|c| {
        c.security.login_max_failures = 3;
        c.security.lockout_minutes = 10;
    })
    .await;
    let base = t.app.base_url();
    let auth = users(&t).await;

    // No session: pages redirect to the login page, keeping where the user wanted to go.
    let r = client().get(format!("{base}/vps?state=active")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fvps%3Fstate%3Dactive");

    // Wrong passwords and unknown users get the same answer, and no session.
    let (_, loc, s) = try_login(&base, "root", "wrong password!").await;
    assert!(s.is_none() && loc.contains("Wrong+username+or+password"), "{loc}");
    let (_, loc2, s) = try_login(&base, "nobody", "wrong password!").await;
    assert!(s.is_none() && loc2.contains("Wrong+username+or+password"), "{loc2}");

    // A login form without its double-submit cookie is refused.
    let r = client()
        .post(format!("{base}/login"))
        .form(&[("username", "root"), ("password", PW), ("_csrf", "x")])
        .send()
        .await
        .expect("post");
    assert!(cookie_value(&r, "vmauto_session").is_none(), "no session without the login cookie");

    // The session works; its cookie is HttpOnly and SameSite=Strict.
    let s = login(&base, "root").await;
    assert_eq!(get(&base, &s, "/").await.0, 200);
    let r = {
        let http = client();
        let page = http.get(format!("{base}/login")).send().await.expect("page");
        let lc = cookie_value(&page, "vmauto_login").expect("cookie");
        let csrf = attr(&page.text().await.expect("html"), "name=\"_csrf\" value=\"");
        http.post(format!("{base}/login"))
            .header("cookie", format!("vmauto_login={lc}"))
            .form(&[("username", "ops"), ("password", PW), ("_csrf", csrf.as_str())])
            .send()
            .await
            .expect("login")
    };
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>();
    let session_cookie = set.iter().find(|c| c.starts_with("vmauto_session=")).expect("session cookie");
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Strict"), "{session_cookie}");

    // Idle expiry and absolute expiry, by ageing the stored session.
    let store = &t.app.state.store;
    store
        .execute("UPDATE session SET last_seen_at = time::now() - 2d WHERE user = 'root'", json!({}))
        .await
        .expect("age");
    assert_eq!(get(&base, &s, "/").await.0, 303, "an idle session ends");
    let s = login(&base, "root").await;
    store
        .execute("UPDATE session SET created_at = time::now() - 30d WHERE user = 'root'", json!({}))
        .await
        .expect("age");
    assert_eq!(get(&base, &s, "/").await.0, 303, "a session ends after its absolute lifetime");

    // Logout everywhere ends the user's other sessions too.
    let a = login(&base, "root").await;
    let b = login(&base, "root").await;
    assert_eq!(post(&base, &a, "/logout/everywhere", &[("_csrf", &a.csrf)]).await.0, 303);
    assert_eq!(get(&base, &b, "/").await.0, 303, "the other session ended");

    // Three failures from this address block the user from it; the right password is then
    // refused too (with the same answer as a wrong one), until an admin resets it.
    let (_, wrong, _) = try_login(&base, "view", "not the password").await;
    for _ in 0..2 {
        let (_, _, s) = try_login(&base, "view", "not the password").await;
        assert!(s.is_none());
    }
    let (_, loc, s) = try_login(&base, "view", PW).await;
    assert!(s.is_none(), "blocked: {loc}");
    assert_eq!(loc, wrong, "a blocked login is answered as a wrong password is");
    let (_, nobody, _) = try_login(&base, "nobody-at-all", "not the password").await;
    assert_eq!(nobody, wrong, "an unknown user is answered the same way");
    auth.set_password("view", "another long password").await.expect("reset");
    let (status, _, s) = try_login(&base, "view", "another long password").await;
    assert!(status == 303 && s.is_some(), "a password reset unlocks");

    // A disabled user's session ends at once.
    let o = login(&base, "ops").await;
    auth.set_disabled("ops", true).await.expect("disable");
    assert_eq!(get(&base, &o, "/").await.0, 303, "disabled users are out");
    let failed: Vec<Value> = store
        .query_one("SELECT message FROM activity WHERE message CONTAINS 'failed login'", json!({}), 0)
        .await
        .expect("activity");
    assert!(failed.len() >= 5, "failed logins are in the activity log: {failed:?}");
}

#[actix_web::test]
async fn every_route_enforces_its_role_and_csrf() {
    let t = TestApp::start().await;
    let base = t.app.base_url();
    users(&t).await;
    let sessions = [
        (Role::Admin, login(&base, "root").await),
        (Role::Operator, login(&base, "ops").await),
        (Role::Viewer, login(&base, "view").await),
    ];
    // Pages: (path, least role).
    let pages = [
        ("/", Role::Viewer),
        ("/vps", Role::Viewer),
        ("/activity", Role::Viewer),
        ("/inbox", Role::Viewer),
        ("/templates", Role::Viewer),
        ("/sources", Role::Viewer),
        ("/notifications", Role::Viewer),
        ("/vps/new", Role::Operator),
        ("/templates/edit", Role::Admin),
        ("/settings", Role::Admin),
    ];
    for (path, least) in pages {
        for (role, s) in &sessions {
            let (status, _) = get(&base, s, path).await;
            let expected = if *role >= least { 200 } else { 403 };
            assert_eq!(status, expected, "GET {path} as {role}");
        }
    }
    // Actions: (path, form, least role). Allowed roles get a redirect (with an error flash for
    // these unknown ids), the others 403.
    let actions: [Action; 13] = [
        ("/settings/config", vec![("policy.grace_days", "x")], Role::Admin),
        ("/vps/nope/action", vec![("action", "suspend")], Role::Operator),
        ("/vps/nope/reveal", vec![], Role::Operator),
        ("/vps/new", vec![("customer_name", "x"), ("customer_email", "x@y"), ("template", "none")], Role::Operator),
        ("/operations/nope/retry", vec![], Role::Operator),
        ("/operations/nope/approve", vec![], Role::Admin),
        ("/operations/nope/reject", vec![], Role::Admin),
        ("/inbox/nope/replay", vec![], Role::Operator),
        ("/templates/map", vec![("source", "ghl"), ("plan", "p"), ("template", "none")], Role::Admin),
        ("/settings/users", vec![("username", "zed"), ("role", "nope")], Role::Admin),
        ("/settings/users/view", vec![("change", "nope")], Role::Admin),
        ("/settings/tokens", vec![("name", "t"), ("role", "nope")], Role::Admin),
        ("/settings/tokens/nope/revoke", vec![], Role::Admin),
    ];
    for (path, form, least) in &actions {
        for (role, s) in &sessions {
            let mut f = form.clone();
            f.push(("_csrf", &s.csrf));
            let (status, _) = post(&base, s, path, &f).await;
            if *role >= *least {
                assert!(status == 303 || status == 404, "POST {path} as {role}: {status}");
            } else {
                assert_eq!(status, 403, "POST {path} as {role}");
            }
        }
        // Without the CSRF token even an admin is refused.
        let (status, _) = post(&base, &sessions[0].1, path, form).await;
        assert_eq!(status, 403, "POST {path} without CSRF");
        let mut f = form.clone();
        f.push(("_csrf", "forged-token-forged-token-forged-token-forged"));
        assert_eq!(post(&base, &sessions[0].1, path, &f).await.0, 403, "POST {path} with a forged token");
    }
    // Security headers on pages.
    let r = client().get(format!("{base}/login")).send().await.expect("login");
    let csp = r.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("referrer-policy"));
}

#[actix_web::test]
async fn api_tokens_follow_the_same_roles_and_can_be_revoked() {
    let t = TestApp::start().await;
    let base = t.app.base_url();
    let auth = users(&t).await;
    let viewer = auth.create_token("reader", Role::Viewer, "admin:root").await.expect("token");
    let operator = auth.create_token("robot", Role::Operator, "admin:root").await.expect("token");
    let http = client();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut r = http.request(method, format!("{base}/api/v1{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.expect("api");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, doc) = call(reqwest::Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")) && doc["paths"]["/vps"].is_object());
    let (s, err) = call(reqwest::Method::GET, "/vps", None, None).await;
    assert_eq!(s, 401, "no token: {err}");
    assert_eq!(err["code"], "unauthorized");
    let (s, page) = call(reqwest::Method::GET, "/vps", Some(&viewer), None).await;
    assert_eq!(s, 200);
    assert_eq!(page["total"], 0);
    let body = json!({ "customer_name": "A", "customer_email": "a@example.com", "template": "missing" });
    let (s, _) = call(reqwest::Method::POST, "/vps", Some(&viewer), Some(body.clone())).await;
    assert_eq!(s, 403, "a viewer cannot create");
    let (s, err) = call(reqwest::Method::POST, "/vps", Some(&operator), Some(body)).await;
    assert_eq!(s, 400, "an operator may, and gets a clear error for a missing template: {err}");
    assert!(err["message"].as_str().unwrap_or_default().contains("no template"), "{err}");
    // A template the API accepts, so only the role decides.
    let template = json!({ "name": "api-small", "az_id": "az-1", "image_id": "img-1", "storage_tag_id": "st-1",
        "cores": 1, "memory_mb": 1024, "disk_gb": 20 });
    let (s, _) = call(reqwest::Method::PUT, "/templates", Some(&operator), Some(template.clone())).await;
    assert_eq!(s, 403, "only admins edit templates");
    let admin = auth.create_token("boss", Role::Admin, "admin:root").await.expect("token");
    let (s, saved) = call(reqwest::Method::PUT, "/templates", Some(&admin), Some(template)).await;
    assert_eq!(s, 200, "the same body from an admin is saved: {saved}");
    let (s, me) = call(reqwest::Method::GET, "/me", Some(&operator), None).await;
    assert_eq!((s, me["role"].as_str()), (200, Some("operator")));
    let tokens = auth.tokens().await.expect("tokens");
    let id = tokens.iter().find(|t| t.name == "robot").map(|t| t.id.clone()).expect("id");
    auth.revoke_token(&id).await.expect("revoke");
    let (s, _) = call(reqwest::Method::GET, "/me", Some(&operator), None).await;
    assert_eq!(s, 401, "a revoked token is refused");
    let (s, _) = call(reqwest::Method::GET, "/me", Some("vma_notatoken"), None).await;
    assert_eq!(s, 401);
    // A session may use the API, but writes need the CSRF header.
    let sess = login(&base, "root").await;
    let r = http
        .post(format!("{base}/api/v1/operations/x/retry"))
        .header("cookie", &sess.cookie)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403, "a session write without X-CSRF-Token");
    let r = http
        .post(format!("{base}/api/v1/operations/x/retry"))
        .header("cookie", &sess.cookie)
        .header("x-csrf-token", &sess.csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 404, "with it the request reaches the handler (no operation x)");
}

#[actix_web::test]
async fn admin_actions_reach_the_lifecycle_and_values_are_escaped() {
    let s = Stack::start_with(SimConfig { task_ms: 100, ip_delay_ms: 50, ..SimConfig::default() }, |_| {}).await;
    let base = s.t.app.base_url();
    users(&s.t).await;
    let op = login(&base, "ops").await;
    let evil = "<script>alert(1)</script> Eve";
    let (status, loc) = post(
        &base,
        &op,
        "/vps/new",
        &[
            ("_csrf", &op.csrf),
            ("customer_name", evil),
            ("customer_email", "eve@example.com"),
            ("template", "vps-small"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let id = loc.trim_start_matches("/vps/").split('?').next().expect("id").to_string();
    s.wait_for("active", 30, &format!("SELECT VALUE state FROM vps:`{id}`"), |r| {
        r.first().is_some_and(|v| *v == json!("active"))
    })
    .await;
    let (_, html) = get(&base, &op, &format!("/vps/{id}")).await;
    assert!(!html.contains("<script>alert(1)"), "a customer's name is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Eve"), "and shown as text");
    let (_, list) = get(&base, &op, "/vps?q=eve").await;
    assert!(list.contains(&id) && !list.contains("<script>alert"), "search finds it, escaped");

    // Resize, then a reset, then a typed-confirmation delete.
    let (status, _) = post(
        &base,
        &op,
        &format!("/vps/{id}/action"),
        &[("_csrf", &op.csrf), ("action", "resize"), ("cores", "2"), ("memory_mb", "2048"), ("disk_gb", "40")],
    )
    .await;
    assert_eq!(status, 303);
    s.wait_for("2", 30, &format!("SELECT VALUE spec.cores FROM vps:`{id}`"), |r| {
        r.first().is_some_and(|v| *v == json!(2))
    })
    .await;
    s.wait_for("active", 30, &format!("SELECT VALUE state FROM vps:`{id}`"), |r| {
        r.first().is_some_and(|v| *v == json!("active"))
    })
    .await;
    let (status, html) = {
        let r = client()
            .post(format!("{base}/vps/{id}/reveal"))
            .header("cookie", &op.cookie)
            .form(&[("_csrf", op.csrf.as_str())])
            .send()
            .await
            .expect("reveal");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    assert_eq!(status, 200);
    assert!(html.contains("Root password") && html.contains("<code>"), "the password is shown");
    let (status, loc) = post(
        &base,
        &op,
        &format!("/vps/{id}/action"),
        &[("_csrf", &op.csrf), ("action", "delete"), ("confirm", "wrong")],
    )
    .await;
    assert!(status == 303 && loc.contains("err="), "a wrong confirmation is refused: {loc}");
    let name = s.rows(&format!("SELECT VALUE name FROM vps:`{id}`")).await[0].as_str().expect("name").to_string();
    post(&base, &op, &format!("/vps/{id}/action"), &[("_csrf", &op.csrf), ("action", "delete"), ("confirm", &name)])
        .await;
    s.wait_for("deleted", 30, &format!("SELECT VALUE state FROM vps:`{id}`"), |r| {
        r.first().is_some_and(|v| *v == json!("deleted"))
    })
    .await;
    let acts = s.rows(&format!("SELECT VALUE message FROM activity WHERE subject = '{id}'")).await;
    for needle in ["created a VPS by hand", "asked for resize", "revealed the root password", "asked for delete"] {
        assert!(acts.iter().any(|m| m.as_str().unwrap_or_default().contains(needle)), "audited: {needle} in {acts:?}");
    }
    assert!(acts.iter().all(|m| m.as_str().unwrap_or_default().contains("admin:ops")), "with the user: {acts:?}");
}

#[actix_web::test]
async fn settings_saved_in_the_ui_are_checked_sealed_and_applied_at_start() {
    let t = TestApp::start().await;
    let base = t.app.base_url();
    users(&t).await;
    let admin = login(&base, "root").await;
    let (_, loc) =
        post(&base, &admin, "/settings/config", &[("_csrf", &admin.csrf), ("policy.grace_days", "soon")]).await;
    assert!(loc.contains("err=") && loc.contains("whole+number"), "a bad value is refused: {loc}");
    let (_, loc) = post(
        &base,
        &admin,
        "/settings/config",
        &[
            ("_csrf", &admin.csrf),
            ("policy.grace_days", "7"),
            ("smtp.host", "mail.example.com"),
            ("smtp.password", "s3cret-smtp-pass"),
            ("stripe.secret_key", ""),
        ],
    )
    .await;
    assert!(loc.contains("ok=") && loc.contains("restarts"), "{loc}");
    let state = &t.app.state;
    let stored = vmauto::settings::stored(&state.store).await.expect("stored");
    assert_eq!(stored.get("policy.grace_days").map(String::as_str), Some("7"));
    assert!(!stored.contains_key("stripe.secret_key"), "an empty secret keeps the old one");
    let sealed = stored.get("smtp.password").expect("password stored");
    assert!(!sealed.contains("s3cret"), "secrets are sealed at rest");
    let rows = state.store.query_one::<Vec<Value>>("SELECT * FROM setting", json!({}), 0).await.expect("rows");
    assert!(!serde_json::to_string(&rows).expect("json").contains("s3cret-smtp-pass"));
    // What the next start does: apply them over the file.
    let mut next = (*state.config).clone();
    vmauto::settings::apply(&mut next, &stored, &state.sealer).expect("applies");
    assert_eq!(next.policy.grace_days, 7);
    assert_eq!(next.smtp.host, "mail.example.com");
    assert_eq!(next.smtp.password.expose(), "s3cret-smtp-pass");
    // The page shows the secret as set, never its value; the change is audited.
    let (_, html) = get(&base, &admin, "/settings").await;
    assert!(!html.contains("s3cret-smtp-pass") && html.contains("saved here"), "write-only secrets");
    let acts = state
        .store
        .query_one::<Vec<Value>>(
            "SELECT VALUE message FROM activity WHERE message CONTAINS 'changed settings'",
            json!({}),
            0,
        )
        .await
        .expect("activity");
    assert_eq!(acts.len(), 1, "{acts:?}");
}

#[actix_web::test]
async fn the_sources_page_lists_the_plugins_with_their_calls() {
    let t = TestApp::start_with(|c| {
        c.sources.insert(
            "ghl".into(),
            vmauto::config::SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: vmauto::config::SignatureScheme::SharedToken,
                token: vmauto::config::Secret::new("0123456789abcdef0123456789abcdef"),
                token_in: "path".into(),
                ..Default::default()
            },
        );
    })
    .await;
    let base = t.app.base_url();
    users(&t).await;
    let admin = login(&base, "root").await;
    let tested = client()
        .post(format!("{base}/sources/ghl/test"))
        .header("cookie", &admin.cookie)
        .form(&[("_csrf", admin.csrf.as_str()), ("payload", "{not json")])
        .send()
        .await
        .expect("post");
    assert_eq!(tested.status().as_u16(), 200);
    let html = tested.text().await.expect("html");
    assert!(html.contains("The plugin refused the payload."), "{html}");

    let viewer = login(&base, "view").await;
    let (status, html) = get(&base, &viewer, "/sources").await;
    assert_eq!(status, 200);
    let row = |name: &str, kind: &str, ok: u64, refused: u64| {
        format!(
            "<td>{name}</td><td>{kind}</td><td>bundled</td><td class=\"num\">{ok}</td><td class=\"num\">{refused}</td><td class=\"num\">0</td>"
        )
    };
    assert!(html.contains(&row("ghl-workflow", "billing-source", 0, 1)), "the refused test is counted: {html}");
    assert!(html.contains(&row("plan-table", "plan-mapper", 0, 0)), "{html}");
    assert_eq!(html.matches("<td>bundled</td>").count(), 5, "every bundled plugin is listed");
}
