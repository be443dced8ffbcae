//! The handlebars registry for emails and customer pages: the built-in templates under
//! `templates/` (embedded in release builds, read from disk in debug builds), strict mode.
//!
//! A template `templates/email/alert.html.hbs` is registered as `email/alert.html`. HTML
//! templates (`*.html.hbs`) escape every `{{value}}`; text templates (`*.txt.hbs`) are
//! rendered by a second registry that does not escape, so a plain-text email shows `<` as `<`.

use std::sync::Arc;

use anyhow::{Context, bail};
use handlebars::Handlebars;
use rust_embed::RustEmbed;
use serde::Serialize;

#[derive(RustEmbed)]
#[folder = "templates/"]
struct Builtin;

/// The registries; cheap to share behind an `Arc`.
pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    /// The admin UI's pages (`admin/…`): escaped, not strict (rows from the store may lack
    /// optional fields), with the display helpers `time` and `mem`.
    admin: Handlebars<'static>,
}

handlebars::handlebars_helper!(time_helper: |t: Json| {
    // "2026-11-25T02:03:47.123456Z" → "2026-11-25 02:03:47"
    let s = t.as_str().unwrap_or_default();
    if s.len() >= 19 { format!("{} {}", &s[..10], &s[11..19]) } else { s.to_string() }
});

handlebars::handlebars_helper!(mem_helper: |mb: Json| {
    let mb = mb.as_f64().unwrap_or(0.0);
    if mb >= 1024.0 { format!("{} GB", (mb / 1024.0 * 10.0).round() / 10.0) } else { format!("{mb} MB") }
});

handlebars::handlebars_helper!(join_helper: |list: Json, sep: str| {
    list.as_array()
        .map(|items| items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(sep))
        .unwrap_or_default()
});

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("count", &(self.html.get_templates().len())).finish()
    }
}

impl Templates {
    /// Registers every built-in template; any that fails to parse fails the load (and so the
    /// start-up), naming the file.
    pub fn load() -> anyhow::Result<Arc<Self>> {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        let mut admin = Handlebars::new();
        admin.register_helper("time", Box::new(time_helper));
        admin.register_helper("mem", Box::new(mem_helper));
        admin.register_helper("join", Box::new(join_helper));
        for path in Builtin::iter() {
            let Some(name) = path.strip_suffix(".hbs") else { continue };
            let file = Builtin::get(&path).with_context(|| format!("template {path} vanished"))?;
            let source = std::str::from_utf8(&file.data).with_context(|| format!("template {path} is not UTF-8"))?;
            let registry = if name.starts_with("admin/") {
                &mut admin
            } else if name.ends_with(".txt") {
                &mut text
            } else {
                &mut html
            };
            registry.register_template_string(name, source).with_context(|| format!("template {path}"))?;
        }
        if html.get_templates().is_empty() {
            bail!("no built-in templates were found");
        }
        Ok(Arc::new(Self { html, text, admin }))
    }

    /// Renders `name` (`email/alert.html`, `email/alert.txt`, `pages/reveal.html`) with `ctx`.
    pub fn render<T: Serialize>(&self, name: &str, ctx: &T) -> anyhow::Result<String> {
        let registry = if name.starts_with("admin/") {
            &self.admin
        } else if name.ends_with(".txt") {
            &self.text
        } else {
            &self.html
        };
        registry.render(name, ctx).with_context(|| format!("rendering template {name}"))
    }

    /// Whether a template is registered.
    pub fn has(&self, name: &str) -> bool {
        self.html.has_template(name) || self.text.has_template(name) || self.admin.has_template(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Ctx {
        title: String,
    }

    #[test]
    fn builtin_templates_load_and_html_is_escaped_but_text_is_not() {
        let t = Templates::load().expect("templates load");
        assert!(t.has("email/alert.html") && t.has("email/alert.txt"));
        assert!(t.has("email/vps_ready.html") && t.has("email/vps_ready.txt"));
        assert!(t.has("pages/reveal.html") && t.has("errors/reveal_gone.html"));
        let mut h = Handlebars::new();
        h.set_strict_mode(true);
        h.register_template_string("x", "{{title}}").expect("parse");
        assert_eq!(h.render("x", &Ctx { title: "<b>".into() }).expect("render"), "&lt;b&gt;");
        let err = t.render("email/alert.html", &Ctx { title: "t".into() }).expect_err("strict mode");
        assert!(format!("{err:#}").contains("email/alert.html"), "{err:#}");
    }
}
