//! Several vmauto nodes on one SurrealDB server ([`nodes`]) and a small HTTP balancer in front
//! of them ([`balancer`]), for the cluster test and benchmark.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Proc;
use super::surreal::{PASS, SurrealServer, USER};

/// `n` nodes (`n1`, `n2`, …, not started) sharing `server`'s database `cluster`, one appliance
/// key and the simulator, each with a data directory under `dir`; lease 4 s.
pub fn nodes(server: &SurrealServer, sim: &vmauto::sim::SimServer, dir: &Path, n: usize) -> Vec<Proc> {
    let key = dir.join("appliance.key");
    // The server's password from a file, as an operator would keep it.
    let password = dir.join("surrealdb.password");
    std::fs::write(&password, format!("{PASS}\n")).expect("password file");
    (1..=n)
        .map(|i| {
            let d = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&d).expect("dir");
            let extra = format!(
                "\n[cluster]\nnode_id = \"n{i}\"\nlease_secs = 4\n\n[security]\nkey_file = \"{}\"\n\n\
                 [database]\nurl = \"{}\"\nusername = \"{USER}\"\npassword_file = \"{}\"\ndatabase = \"cluster\"\n",
                key.display(),
                server.url(),
                password.display()
            );
            Proc::new(&d, sim, "get_per_minute = 60000\nwrite_per_minute = 60000", &extra)
        })
        .collect()
}

/// The balancer: forwards every request to the next node, skipping nodes that do not answer.
pub async fn balancer(nodes: Vec<u16>) -> (u16, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    struct Lb {
        nodes: Vec<u16>,
        next: AtomicUsize,
        http: reqwest::Client,
    }
    async fn forward(lb: web::Data<Lb>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
        for _ in 0..lb.nodes.len() {
            let port = lb.nodes[lb.next.fetch_add(1, Ordering::Relaxed) % lb.nodes.len()];
            let url = format!("http://127.0.0.1:{port}{}", req.uri());
            let sent = lb
                .http
                .request(reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method"), url)
                .header("content-type", "application/json")
                .body(body.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if let Ok(r) = sent {
                let status = actix_web::http::StatusCode::from_u16(r.status().as_u16()).expect("status");
                return HttpResponse::build(status).body(r.bytes().await.unwrap_or_default());
            }
        }
        HttpResponse::BadGateway().finish()
    }
    let lb = web::Data::new(Lb { nodes, next: AtomicUsize::new(0), http: reqwest::Client::new() });
    let server = HttpServer::new(move || App::new().app_data(lb.clone()).default_service(web::to(forward)))
        .workers(2)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, handle)
}
