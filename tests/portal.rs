//! The customer's portal, `/my/<token>`, over HTTP: links (issue through the API and the CLI
//! commands, revoke, renew, expiry, forgery), the page and its status (no admin field, its
//! own CSP), every action an operation `requested_by = customer:<link>` in the timeline
//! (power on the simulator, a new root password shown once, reinstall with a typed
//! confirmation), one task at a time, and the per-link rate limit.

use std::time::Instant;

use serde_json::Value;
use vmauto::admin::TimelineEntry;
use vmauto::auth::Role;
use vmauto::lifecycle::OpKind;

use crate::common::Stack;
use crate::upgrades::active_vps;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The path of a portal URL (`/my/<token>`).
fn path_of(url: &str) -> String {
    format!("/my/{}", url.rsplit('/').next().expect("token"))
}

/// The value of `<input … name="NAME" value="…">` in a page.
fn input_value(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

async fn operator_token(s: &Stack) -> String {
    s.t.app.state.auth.create_token("robot", Role::Operator, "admin:root").await.expect("token")
}

/// Issues a link through the API; answers (link id, page path).
async fn issue(s: &Stack, token: &str, vps: &str) -> (String, String) {
    let resp =
        s.t.http
            .post(s.t.url(&format!("/api/v1/vps/{vps}/portal-links")))
            .bearer_auth(token)
            .send()
            .await
            .expect("issue");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    let url = body["url"].as_str().expect("url");
    assert!(url.contains("/my/"), "{body}");
    (body["id"].as_str().expect("id").to_string(), path_of(url))
}

async fn post_form(s: &Stack, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    no_redirects()
        .post(s.t.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .expect("post")
}

/// Where a 303 sends the browser.
fn location(resp: &reqwest::Response) -> String {
    assert_eq!(resp.status(), 303, "expected a redirect");
    resp.headers()["location"].to_str().expect("location").to_string()
}

async fn page(s: &Stack, path: &str) -> (u16, String) {
    let resp = s.t.http.get(s.t.url(path)).send().await.expect("page");
    (resp.status().as_u16(), resp.text().await.expect("html"))
}

/// Waits until the VPS's latest operation of `kind` has settled; answers it.
async fn settled(s: &Stack, vps: &str, kind: &str) -> Value {
    let sql = format!(
        "SELECT kind, state, requested_by, params FROM operation WHERE vps = '{vps}' AND kind = '{kind}' ORDER BY created_at DESC LIMIT 1"
    );
    s.wait_for(kind, 60, &sql, |r| {
        r.len() == 1 && ["succeeded", "dead"].contains(&r[0]["state"].as_str().unwrap_or(""))
    })
    .await
    .remove(0)
}

async fn sim_status(s: &Stack) -> String {
    s.sim_servers().await[0]["status"].as_str().unwrap_or_default().to_string()
}

#[actix_web::test]
async fn a_portal_link_opens_one_vps_without_admin_data_until_it_is_revoked_or_expires() {
    let s = Stack::start().await;
    let vps = active_vps(&s, "sub-portal").await;
    let token = operator_token(&s).await;
    let (id, path) = issue(&s, &token, &vps).await;

    let resp = s.t.http.get(s.t.url(&path)).send().await.expect("page");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.expect("html");
    let row = &s.rows(&format!("SELECT * FROM vps:`{vps}`")).await[0];
    assert!(html.contains(row["name"].as_str().expect("name")), "the VPS's name: {html}");
    assert!(html.contains(row["ips"][0].as_str().expect("ip")), "its address: {html}");
    for admin_field in ["customer_email", "subscription", "server_id"] {
        if let Some(v) = row[admin_field].as_str() {
            assert!(!html.contains(v), "{admin_field} {v} must not reach the customer: {html}");
        }
    }
    assert!(!html.contains("admin:") && !html.contains("api:"), "no admin names: {html}");
    // Every external reference is vmauto's own.
    for attr in ["src=\"", "href=\"", "action=\""] {
        for part in html.split(attr).skip(1) {
            assert!(part.starts_with('/'), "{attr}{} leaves vmauto", &part[..part.len().min(40)]);
        }
    }
    let status: Value =
        s.t.http.get(s.t.url(&format!("{path}/status"))).send().await.expect("status").json().await.expect("json");
    assert_eq!(status["state"], "active");
    let mut keys: Vec<&str> = status.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["current", "ips", "password_ready", "power", "state"], "{status}");

    // A forged token (a changed character) opens nothing.
    let mut forged = path.clone();
    let last = forged.pop().expect("char");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (code, html) = page(&s, &forged).await;
    assert_eq!(code, 404);
    assert!(html.contains("not valid") && !html.contains(&vps), "{html}");

    // Listed for the admin (never with its URL), renewed, then revoked.
    let list: Value =
        s.t.http
            .get(s.t.url(&format!("/api/v1/vps/{vps}/portal-links")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
    assert_eq!(list["links"][0]["state"], "active");
    assert!(!list.to_string().contains(path.trim_start_matches("/my/")), "the token is never listed: {list}");
    let renewed =
        s.t.http
            .post(s.t.url(&format!("/api/v1/portal-links/{id}/renew")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("renew");
    assert_eq!(renewed.status(), 200);
    let revoked =
        s.t.http
            .post(s.t.url(&format!("/api/v1/portal-links/{id}/revoke")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let (code, html) = page(&s, &path).await;
    assert_eq!(code, 410);
    assert!(html.contains("withdrawn") && !html.contains(row["name"].as_str().expect("name")), "{html}");
    let (code, _) = page(&s, &format!("{path}/status")).await;
    assert_eq!(code, 410);
    let again =
        s.t.http
            .post(s.t.url(&format!("/api/v1/portal-links/{id}/renew")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("renew");
    assert_eq!(again.status(), 400, "a revoked link is not renewed");

    // An expired link says so.
    let (id2, path2) = issue(&s, &token, &vps).await;
    s.rows(&format!("UPDATE portal_link:`{id2}` SET expires_at = time::now() - 1h")).await;
    let (code, html) = page(&s, &path2).await;
    assert_eq!(code, 410);
    assert!(html.contains("expired"), "{html}");

    // The CLI's commands (the same code the running appliance runs for a remote CLI).
    let st = &s.t.app.state;
    let cmd = vmauto::commands::PortalCommand::Link { vps: vps.clone() };
    let out = vmauto::commands::execute_portal(&st.store, &st.config, &st.sealer, &cmd).await.expect("cli link");
    let url = out.lines().next().expect("url");
    assert_eq!(page(&s, &path_of(url)).await.0, 200, "{out}");
    let cmd = vmauto::commands::PortalCommand::Links { vps: vps.clone() };
    let out = vmauto::commands::execute_portal(&st.store, &st.config, &st.sealer, &cmd).await.expect("cli links");
    assert_eq!(out.lines().count(), 3, "three links: {out}");
    assert!(out.contains("revoked") && out.contains("expired") && out.contains("active"), "{out}");
    // Every change is in the VPS's activity.
    let acts = s.rows(&format!("SELECT VALUE message FROM activity WHERE subject = 'vps:{vps}'")).await;
    for m in ["portal link issued", "portal link renewed", "portal link revoked"] {
        assert!(acts.iter().any(|a| a == m), "{m} in {acts:?}");
    }
}

#[actix_web::test]
async fn each_customer_action_is_an_operation_of_their_link_and_one_runs_at_a_time() {
    let s = Stack::start().await;
    let vps = active_vps(&s, "sub-actions").await;
    let token = operator_token(&s).await;
    let (id, path) = issue(&s, &token, &vps).await;
    let who = format!("customer:{id}");
    let (_, html) = page(&s, &path).await;
    let form_token = input_value(&html, "form_token");

    // Without the page's form token nothing happens.
    let resp = post_form(&s, &format!("{path}/power"), &[("action", "stop")]).await;
    assert!(location(&resp).ends_with("?m=form"));

    // Shut down, then a second request while it runs is refused.
    let resp = post_form(&s, &format!("{path}/power"), &[("action", "stop"), ("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=power"));
    let resp = post_form(&s, &format!("{path}/power"), &[("action", "reboot"), ("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=busy"), "one task at a time");
    let op = settled(&s, &vps, "power").await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["requested_by"], who.as_str());
    assert_eq!(sim_status(&s).await, "stopped");
    let status: Value =
        s.t.http.get(s.t.url(&format!("{path}/status"))).send().await.expect("s").json().await.expect("j");
    assert_eq!(status["power"], "off");
    assert_eq!(status["state"], "active", "a stopped VPS is still the customer's, active");

    // Start it again.
    let resp = post_form(&s, &format!("{path}/power"), &[("action", "start"), ("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=power"));
    s.wait_for("started", 60, &format!("SELECT state, power FROM vps:`{vps}`"), |r| r[0]["power"] == "on").await;
    assert_eq!(sim_status(&s).await, "running");

    // A new root password, shown once.
    let resp = post_form(&s, &format!("{path}/password"), &[("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=password"));
    let op = settled(&s, &vps, "set_password").await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let (_, html) = page(&s, &path).await;
    assert!(
        html.contains("Your new root password is ready") && !html.contains("id=\"password-ready\" hidden"),
        "{html}"
    );
    let resp = post_form(&s, &format!("{path}/password/show"), &[("form_token", &form_token)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let shown = resp.text().await.expect("html");
    let st = &s.t.app.state;
    let sealed =
        s.rows(&format!("SELECT VALUE root_password FROM vps:`{vps}`")).await[0].as_str().expect("sealed").to_string();
    let password = st.sealer.open(&sealed, &vmauto::secrets::root_password_place(&vps)).expect("open");
    let escaped = password
        .expose()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('=', "&#x3D;")
        .replace('`', "&#x60;");
    assert!(shown.contains(&escaped), "the stored password is the one shown");
    let resp = post_form(&s, &format!("{path}/password/show"), &[("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=shown"), "shown once only");

    // Reinstall needs the name typed and an offered image.
    let name = s.rows(&format!("SELECT VALUE name FROM vps:`{vps}`")).await[0].as_str().expect("name").to_string();
    let image = s.rows(&format!("SELECT VALUE template_row.image_id FROM vps:`{vps}`")).await[0]
        .as_str()
        .expect("image")
        .to_string();
    let reinstall = format!("{path}/reinstall");
    let resp = post_form(&s, &reinstall, &[("image", &image), ("confirm", "wrong"), ("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=confirm"));
    let resp =
        post_form(&s, &reinstall, &[("image", "img-not-offered"), ("confirm", &name), ("form_token", &form_token)])
            .await;
    assert!(location(&resp).ends_with("?m=image"));
    let before = s.rows(&format!("SELECT VALUE server_id FROM vps:`{vps}`")).await[0].clone();
    let resp = post_form(&s, &reinstall, &[("image", &image), ("confirm", &name), ("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=reinstall"));
    let op = settled(&s, &vps, "rebuild").await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["requested_by"], who.as_str());
    let after = s.rows(&format!("SELECT VALUE server_id FROM vps:`{vps}`")).await[0].clone();
    assert_ne!(before, after, "a new VM");

    // All of it is in the VPS's timeline, under the link.
    let timeline = st.store.vps_timeline(&vps.as_str().into()).await.expect("timeline");
    let ops: Vec<(OpKind, String)> = timeline
        .iter()
        .filter_map(|t| match t {
            TimelineEntry::Operation(op) => Some((op.op, op.requested_by.clone())),
            _ => None,
        })
        .collect();
    for kind in [OpKind::Power, OpKind::SetPassword, OpKind::Rebuild] {
        assert!(ops.contains(&(kind, who.clone())), "{kind:?} requested by the link in the timeline: {ops:?}");
    }
    // The page lists them as the customer's own.
    let (_, html) = page(&s, &path).await;
    assert!(html.contains("Reinstall") && html.contains("(you)"), "{html}");
}

#[actix_web::test]
async fn a_link_gets_its_budget_of_requests_a_minute_and_a_suspended_vps_is_not_powered() {
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| c.portal.requests_per_minute = 10).await;
    let vps = active_vps(&s, "sub-budget").await;
    let token = operator_token(&s).await;
    let (_, path) = issue(&s, &token, &vps).await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(page(&s, &format!("{path}/status")).await.0);
    }
    assert_eq!(&codes[..10], &[200; 10]);
    assert_eq!(&codes[10..], &[429, 429], "{codes:?}");

    // A suspended VPS: no power, password or reinstall from the portal.
    let st = &s.t.app.state;
    let link =
        vmauto::portal::issue(&st.store, &st.config, &st.sealer, &vps.as_str().into(), "test").await.expect("link");
    let path = path_of(&link.url);
    s.send(crate::common::event(vmauto::billing::EventKind::Suspend, "sub-budget", None, None)).await;
    s.wait_for("suspended", 60, &format!("SELECT state FROM vps:`{vps}`"), |r| r[0]["state"] == "suspended").await;
    // The budget is per link: the new link has its own.
    let (code, html) = page(&s, &path).await;
    assert_eq!(code, 200);
    assert!(html.contains("Your server is suspended") && !html.contains("/power\""), "{html}");
    // Sent anyway (a stale page): refused.
    let form_token = vmauto::portal::form_token(&st.sealer, &link.id);
    let resp = post_form(&s, &format!("{path}/power"), &[("action", "start"), ("form_token", &form_token)]).await;
    assert!(location(&resp).ends_with("?m=inactive"));
    let ops = s.rows(&format!("SELECT VALUE kind FROM operation WHERE vps = '{vps}' AND kind = 'power'")).await;
    assert!(ops.is_empty(), "{ops:?}");
}

#[actix_web::test]
async fn the_console_is_relayed_by_vmauto_one_session_per_link_and_ends_with_the_link() {
    use crate::sim::console::{Vnc, refused};
    let s = Stack::start().await;
    let vps = active_vps(&s, "sub-console").await;
    let token = operator_token(&s).await;
    let (id, path) = issue(&s, &token, &vps).await;
    let name =
        s.rows(&format!("SELECT VALUE vm_name FROM vps:`{vps}`")).await[0].as_str().expect("vm name").to_string();

    // The page loads noVNC from vmauto only.
    let (code, html) = page(&s, &format!("{path}/console")).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("src=\"/assets/portal-console.js\""), "{html}");
    let js = s.t.http.get(s.t.url("/assets/novnc/core/rfb.js")).send().await.expect("novnc");
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().expect("type").starts_with("text/javascript"));

    // The relay speaks the simulator's VNC: the VM's name and its screen.
    let ws = s.t.url(&format!("{path}/console/ws"));
    let mut vnc = Vnc::connect(&ws).await.expect("the console opens through vmauto");
    let init = vnc.handshake().await;
    assert_eq!(init.name, name);
    vnc.set_novnc_format().await;
    vnc.request(false, init.width, init.height).await;
    let screen = vnc.update().await.expect("a screen");
    let colours: std::collections::HashSet<&[u8]> = screen[0].pixels.chunks(4).collect();
    assert!(colours.len() >= 3, "text on the screen");
    let opened = s.rows(&format!("SELECT VALUE message FROM activity WHERE subject = 'vps:{vps}'")).await;
    assert!(opened.iter().any(|m| m == "the customer opened the console"), "{opened:?}");

    // A second session of the link ends the first.
    let mut second = Vnc::connect(&ws).await.expect("a second session");
    assert_eq!(second.handshake().await.name, name);
    vnc.request(false, init.width, init.height).await;
    let mut first_closed = false;
    for _ in 0..5 {
        if vnc.update().await.is_none() {
            first_closed = true;
            break;
        }
    }
    assert!(first_closed, "one session per link");
    assert_eq!(s.t.app.state.consoles.open(), 1);

    // Without a valid link nothing is relayed, and SCP is not asked.
    let mut forged = ws.clone();
    forged.insert(forged.len() - "/console/ws".len() - 1, 'x');
    assert_eq!(refused(&forged).await, 404);
    let plain = s.t.http.get(&ws).send().await.expect("plain");
    assert_eq!(plain.status(), 426);

    // Revoking the link ends the session within seconds.
    let revoked =
        s.t.http
            .post(s.t.url(&format!("/api/v1/portal-links/{id}/revoke")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        second.request(true, init.width, init.height).await;
        if second.update().await.is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the session outlived its link");
    }
    assert_eq!(refused(&ws).await, 410);
}

#[actix_web::test]
async fn usage_graphs_come_from_scp_metrics_for_the_customer_and_the_admin() {
    let s = Stack::start().await;
    let vps = active_vps(&s, "sub-usage").await;
    let token = operator_token(&s).await;
    let (_, path) = issue(&s, &token, &vps).await;
    // A VM seconds old has no history yet: the page says so.
    let (code, html) = page(&s, &format!("{path}/usage")).await;
    assert_eq!(code, 200);
    assert!(html.contains("No data for this period yet"), "{html}");
    // As if it had run for 30 hours (the usage cache holds answers a minute: a new span).
    let server = s.rows(&format!("SELECT VALUE server_id FROM vps:`{vps}`")).await[0].as_str().expect("vm").to_string();
    let aged = reqwest::Client::new()
        .post(format!("{}/_sim/servers/{server}/age", s.sim.base_url()))
        .json(&serde_json::json!({ "hours": 30 }))
        .send()
        .await
        .expect("age");
    assert_eq!(aged.status(), 200);
    s.t.app.state.usage.clear();
    for range in ["24h", "7d"] {
        let (code, html) = page(&s, &format!("{path}/usage?range={range}")).await;
        assert_eq!(code, 200, "{html}");
        assert_eq!(html.matches("<polyline").count(), 4, "CPU, memory, network in and out over {range}: {html}");
        assert!(html.contains(" %") && html.contains("Mbit/s"), "{html}");
        assert!(!html.contains("cannot be read"), "{html}");
    }
    // The CPU line of a running VM is not flat at zero: its top value is above 0 %.
    let (_, html) = page(&s, &format!("{path}/usage")).await;
    let cpu = html.split("<h2>CPU</h2>").nth(1).expect("cpu chart");
    let top = cpu.split("text-anchor=\"end\">").nth(1).and_then(|t| t.split(' ').next()).expect("axis top");
    assert!(top.parse::<f64>().expect("a number") > 0.0, "CPU axis top {top}");

    // The admin sees the same graphs on the VPS's usage page.
    crate::ui::users(&s.t).await;
    let base = s.t.app.base_url();
    let session = crate::ui::login(&base, "view").await;
    let (code, html) = crate::ui::get(&base, &session, &format!("/vps/{vps}/usage?range=7d")).await;
    assert_eq!(code, 200, "{html}");
    assert_eq!(html.matches("<polyline").count(), 4, "{html}");
    let (_, detail) = crate::ui::get(&base, &session, &format!("/vps/{vps}")).await;
    assert!(detail.contains(&format!("/vps/{vps}/usage")), "the VPS page links to its usage");
}

/// The console relay against a direct connection to the simulator's console: full-screen
/// updates (640×400×4 bytes) requested one after another, MB/s and time per update.
/// `cargo test --test integration -- --ignored --nocapture bench_portal_console`.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_portal_console"]
async fn bench_portal_console_relay() {
    use crate::sim::console::Vnc;
    let s = Stack::start().await;
    let vps = active_vps(&s, "sub-console-bench").await;
    let token = operator_token(&s).await;
    let (_, path) = issue(&s, &token, &vps).await;
    let server = s.rows(&format!("SELECT VALUE server_id FROM vps:`{vps}`")).await[0].as_str().expect("vm").to_string();
    let frames = 200;
    let mut per = Vec::new();
    for (what, relayed) in [("direct to the simulator", false), ("through vmauto", true)] {
        let url = if relayed {
            s.t.url(&format!("{path}/console/ws"))
        } else {
            let ask = vmauto::actors::gateway::GetConsoleUrl { server_id: vmauto::provider::ServerId::new(&server) };
            s.t.app.handles().gateway.send(ask).await.expect("gateway").expect("console url").expose().to_string()
        };
        let mut vnc = Vnc::connect(&url).await.expect("console");
        let init = vnc.handshake().await;
        vnc.set_novnc_format().await;
        let t0 = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..frames {
            vnc.request(false, init.width, init.height).await;
            let rects = vnc.update().await.expect("update");
            bytes += rects.iter().map(|r| r.pixels.len()).sum::<usize>();
        }
        let took = t0.elapsed().as_secs_f64();
        let ms = took * 1000.0 / f64::from(frames);
        per.push(ms);
        println!("  {what:<24} {:>7.1} MB/s   {:>6.2} ms per full-screen update", bytes as f64 / took / 1e6, ms);
    }
    println!("  added by the relay: {:.2} ms per update", per[1] - per[0]);
}

#[actix_web::test]
async fn the_portal_opens_the_upgrade_flow_of_its_vps() {
    vmauto::init_crypto();
    let fake = crate::common::stripe::FakeStripe::start().await;
    let s =
        Stack::start_with(vmauto::sim::SimConfig::default(), |c| crate::common::stripe::stripe_config(c, &fake.url))
            .await;
    let vps = active_vps(&s, "sub-portal-up").await;
    let st = &s.t.app.state;
    let link =
        vmauto::portal::issue(&st.store, &st.config, &st.sealer, &vps.as_str().into(), "test").await.expect("link");
    let path = format!("/my/{}", crate::upgrades::token_of(&link.url));
    let html = s.t.http.get(s.t.url(&path)).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("See upgrades"), "{html}");
    let form_token = input_value(&html, "form_token");
    let body = format!("form_token={form_token}");
    let resp = no_redirects()
        .post(s.t.url(&format!("{path}/upgrade")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("upgrade");
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().expect("location").to_string();
    assert!(to.starts_with("/upgrade/"), "{to}");
    let page = s.t.http.get(s.t.url(&to)).send().await.expect("upgrade page").text().await.expect("html");
    assert!(page.contains("+2 GB memory"), "the offers of this VPS: {page}");
    let issued = s.rows(&format!("SELECT VALUE issued_by FROM upgrade_link WHERE vps = '{vps}'")).await;
    assert_eq!(issued, vec![serde_json::json!(format!("customer:{}", link.id))]);
    // Clicking again answers the same link: clicks store nothing more.
    let see_upgrades =
        async || location(&post_form(&s, &format!("{path}/upgrade"), &[("form_token", &form_token)]).await);
    for _ in 0..3 {
        assert_eq!(see_upgrades().await, to);
    }
    assert_eq!(s.rows(&format!("SELECT * FROM upgrade_link WHERE vps = '{vps}'")).await.len(), 1);
    // Once that link is used up (revoked here), the next click opens the next one.
    let first = s.rows(&format!("SELECT VALUE record::id(id) FROM upgrade_link WHERE vps = '{vps}'")).await;
    let first = vmauto::upgrade::links::LinkId::from(first[0].as_str().expect("id"));
    vmauto::upgrade::revoke_link(&st.store, &first, "admin:t").await.expect("revoked");
    let next = see_upgrades().await;
    assert!(next.starts_with("/upgrade/") && next != to, "{next}");
    assert_eq!(s.t.get(&next).await.0, 200, "the next link opens");
    // Without the page's form token nothing is issued.
    let resp = no_redirects().post(s.t.url(&format!("{path}/upgrade"))).send().await.expect("upgrade");
    assert!(resp.headers()["location"].to_str().expect("location").ends_with("?m=form"));
}
