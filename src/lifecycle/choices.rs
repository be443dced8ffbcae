//! What the customer chose at checkout (image, hostname, location), checked against the
//! template their plan maps to. A choice the template does not allow is refused with a
//! message naming the field, the value and what is allowed: the event is parked, never built
//! with defaults.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::billing::OrderChoices;
use crate::config::{Candidate, LocationConfig, PlacementPolicy};
use crate::db::models::template::Template;

/// The choices as they will be built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The image alias chosen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The SCP image the VM is built from.
    pub image_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The location chosen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The provider and AZ the VM is built in (placement's choice among the candidates).
    pub provider: String,
    pub az_id: String,
    /// The candidate it is built in.
    #[serde(skip)]
    pub candidate: Candidate,
}

impl Resolved {
    /// The template row to store with the VPS: the template, built where and from what was
    /// chosen.
    pub fn apply(&self, template: &Template) -> Template {
        let mut t = Template { image_id: self.image_id.clone(), az_id: self.az_id.clone(), ..template.clone() };
        let c = &self.candidate;
        let set = |field: &mut String, value: &str| {
            if !value.is_empty() {
                *field = value.to_string();
            }
        };
        set(&mut t.storage_tag_id, &c.storage_tag_id);
        set(&mut t.vpc_id, &c.vpc_id);
        set(&mut t.subnet_id, &c.subnet_id);
        t.provider = if c.provider == crate::config::DEFAULT_PROVIDER { String::new() } else { c.provider.clone() };
        t
    }
}

/// What the order asks for, checked against the template, before it is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub image: Option<String>,
    pub hostname: Option<String>,
    pub location: Option<String>,
    /// Where it may be built, in order: the location's candidates (those that have the
    /// chosen image in their AZ), or the template's own provider and AZ.
    pub candidates: Vec<Candidate>,
    pub policy: PlacementPolicy,
}

impl Wanted {
    /// The choices as built in `candidate` (one of [`Wanted::candidates`]).
    pub fn build(&self, template: &Template, candidate: &Candidate) -> Resolved {
        let image_id = self
            .image
            .as_ref()
            .and_then(|alias| template.images.get(alias))
            .and_then(|r| r.in_az(&candidate.az))
            .map_or_else(|| template.image_id.clone(), str::to_string);
        Resolved {
            image: self.image.clone(),
            image_id,
            hostname: self.hostname.clone(),
            location: self.location.clone(),
            provider: candidate.provider.clone(),
            az_id: candidate.az.clone(),
            candidate: candidate.clone(),
        }
    }
}

fn listed(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let all: Vec<String> = items.into_iter().map(|i| i.as_ref().to_string()).collect();
    if all.is_empty() { "none are offered".into() } else { format!("allowed: {}", all.join(", ")) }
}

/// Checks `choices` against `template`; `Err` is the message to park the event with.
pub fn check(
    template: &Template,
    choices: &OrderChoices,
    locations: &BTreeMap<String, LocationConfig>,
) -> Result<Wanted, String> {
    let t = &template.name;
    let own = Candidate {
        provider: if template.provider.is_empty() {
            crate::config::DEFAULT_PROVIDER.to_string()
        } else {
            template.provider.clone()
        },
        az: template.az_id.clone(),
        ..Candidate::default()
    };
    let (location, mut candidates, policy) = match &choices.location {
        None => (None, vec![own], PlacementPolicy::Fill),
        Some(l) if !template.locations.contains(l) => {
            return Err(format!("location {l:?} is not offered for template {t} ({})", listed(&template.locations)));
        }
        Some(l) => match locations.get(l).filter(|c| !c.candidates.is_empty()) {
            Some(c) => (Some(l.clone()), c.candidates.clone(), c.policy),
            None => {
                return Err(format!(
                    "location {l:?} of template {t} is not configured: add [locations.{l}] to appliance.toml"
                ));
            }
        },
    };
    let image = match &choices.image {
        None => None,
        Some(alias) => match template.images.get(alias) {
            None => {
                return Err(format!(
                    "image {alias:?} is not offered for template {t} ({})",
                    listed(template.images.keys())
                ));
            }
            Some(r) => {
                candidates.retain(|c| r.in_az(&c.az).is_some());
                if candidates.is_empty() {
                    let place = location
                        .as_deref()
                        .map_or_else(|| format!("AZ {}", template.az_id), |l| format!("location {l}"));
                    return Err(format!(
                        "image {alias:?} of template {t} has no image id for an AZ of {place}: add one to the template"
                    ));
                }
                Some(alias.clone())
            }
        },
    };
    let hostname = match &choices.hostname {
        None => None,
        Some(h) => Some(check_hostname(t.as_str(), &template.hostname_rule, h)?),
    };
    Ok(Wanted { image, hostname, location, candidates, policy })
}

/// A hostname as RFC 1123 allows it (labels of 1–63 letters, digits and hyphens, not starting
/// or ending with a hyphen, 253 characters at most), under the template's rule; lower-cased.
fn check_hostname(template: &str, rule: &str, hostname: &str) -> Result<String, String> {
    let h = hostname.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(format!(
            "hostname {hostname:?} is not a valid hostname (RFC 1123: letters, digits and hyphens in labels of \
             1-63 characters separated by dots, no label starting or ending with a hyphen)"
        ));
    }
    match rule.trim() {
        "" | "any" => Ok(h),
        "none" => {
            Err(format!("hostname {hostname:?} was chosen but template {template} does not let orders choose one"))
        }
        r => match r.strip_prefix("*.") {
            Some(domain) if h.ends_with(&format!(".{}", domain.to_ascii_lowercase())) => Ok(h),
            Some(domain) => Err(format!(
                "hostname {hostname:?} is not allowed for template {template} (allowed: a name under {domain})"
            )),
            None => Err(format!("template {template} has an unknown hostname rule {r:?}; use any, none or *.domain")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Candidate;
    use crate::db::models::template::ImageRef;

    fn template() -> Template {
        Template {
            name: "vps-small".into(),
            az_id: "az-1".into(),
            image_id: "img-default".into(),
            images: BTreeMap::from([
                ("ubuntu-22.04".into(), ImageRef::Id("img-u22".into())),
                (
                    "debian-12".into(),
                    ImageRef::PerAz(BTreeMap::from([
                        ("az-1".into(), "img-d12a".into()),
                        ("az-2".into(), "img-d12b".into()),
                    ])),
                ),
                ("rocky-9".into(), ImageRef::PerAz(BTreeMap::from([("az-1".into(), "img-r9".into())]))),
            ]),
            locations: vec!["eu".into(), "us".into()],
            hostname_rule: "*.example.com".into(),
            ..Template::default()
        }
    }

    fn locations() -> BTreeMap<String, LocationConfig> {
        let at = |az: &str| LocationConfig {
            candidates: vec![Candidate {
                provider: "default".into(),
                az: az.into(),
                storage_tag_id: format!("tag-{az}"),
                ..Candidate::default()
            }],
            ..LocationConfig::default()
        };
        BTreeMap::from([("eu".into(), at("az-1")), ("us".into(), at("az-2"))])
    }

    fn choose(image: Option<&str>, hostname: Option<&str>, location: Option<&str>) -> OrderChoices {
        OrderChoices {
            image: image.map(Into::into),
            hostname: hostname.map(Into::into),
            location: location.map(Into::into),
        }
    }

    /// Checks and builds at the first candidate.
    fn resolve(t: &Template, c: &OrderChoices, l: &BTreeMap<String, LocationConfig>) -> Result<Resolved, String> {
        let w = check(t, c, l)?;
        Ok(w.build(t, &w.candidates[0]))
    }

    #[test]
    fn no_choice_builds_the_template() {
        let r = resolve(&template(), &OrderChoices::default(), &locations()).expect("ok");
        assert_eq!((r.image_id.as_str(), r.az_id.as_str(), r.provider.as_str()), ("img-default", "az-1", "default"));
        assert_eq!((r.image, r.hostname, r.location), (None, None, None));
    }

    #[test]
    fn allowed_choices_pick_the_image_of_the_location_s_az() {
        let r = resolve(&template(), &choose(Some("debian-12"), Some("Web-1.Example.com."), Some("us")), &locations())
            .expect("ok");
        assert_eq!((r.image_id.as_str(), r.az_id.as_str()), ("img-d12b", "az-2"));
        assert_eq!(r.hostname.as_deref(), Some("web-1.example.com"));
        let applied = r.apply(&template());
        assert_eq!((applied.image_id.as_str(), applied.az_id.as_str()), ("img-d12b", "az-2"));
        assert_eq!(applied.storage_tag_id, "tag-az-2", "the location's storage tag in its AZ");
        let r = resolve(&template(), &choose(Some("ubuntu-22.04"), None, None), &locations()).expect("ok");
        assert_eq!(r.image_id, "img-u22");
    }

    #[test]
    fn refusals_name_the_field_the_value_and_what_is_allowed() {
        let t = template();
        let no = |c: OrderChoices| resolve(&t, &c, &locations()).expect_err("refused");
        let e = no(choose(Some("windows-11"), None, None));
        assert!(e.contains("image \"windows-11\"") && e.contains("debian-12, rocky-9, ubuntu-22.04"), "{e}");
        let e = no(choose(Some("rocky-9"), None, Some("us")));
        assert!(e.contains("no image id for an AZ of location us"), "{e}");
        let e = no(choose(None, None, Some("mars")));
        assert!(e.contains("location \"mars\"") && e.contains("allowed: eu, us"), "{e}");
        let e = no(choose(None, Some("-bad-.example.com"), None));
        assert!(e.contains("hostname \"-bad-.example.com\"") && e.contains("RFC 1123"), "{e}");
        let e = no(choose(None, Some("web.other.org"), None));
        assert!(e.contains("under example.com"), "{e}");
        for bad in ["", "a..b", "under_score", &"x".repeat(64), &format!("{}.com", "a.".repeat(130))] {
            assert!(check_hostname("t", "", bad).is_err(), "{bad:?}");
        }
        let mut none = template();
        none.hostname_rule = "none".into();
        assert!(check(&none, &choose(None, Some("a.example.com"), None), &locations()).is_err());
        let mut unconfigured = template();
        unconfigured.locations.push("asia".into());
        let e = check(&unconfigured, &choose(None, None, Some("asia")), &locations()).expect_err("refused");
        assert!(e.contains("[locations.asia]"), "{e}");
    }
}
