//! The UI's static files (`ui/`: CSS, JavaScript, icons), embedded in the binary.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/assets/{file:.*}", web::get().to(asset)).route("/favicon.ico", web::get().to(favicon));
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    let Some(f) = Assets::get(&file) else {
        return HttpResponse::NotFound().content_type("text/plain").body("no such asset");
    };
    let mime = match file.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    };
    HttpResponse::Ok()
        .content_type(mime)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(f.data.into_owned())
}

/// Browsers ask for `/favicon.ico` on every page, the customer pages included.
async fn favicon() -> HttpResponse {
    asset(web::Path::from("favicon.svg".to_string())).await
}
