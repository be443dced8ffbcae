//! The export macros: [`export_source!`](crate::export_source) and
//! [`export_mapper!`](crate::export_mapper) generate a plugin's component-model bindings and
//! convert between them and this crate's types.

/// Exports a billing-source plugin: `export_source!(parse)` with
/// `fn parse(req: &Request) -> Result<Vec<Event>>`.
#[macro_export]
macro_rules! export_source {
    ($parse:path) => {
        mod __vmauto_bindings {
            $crate::wit_bindgen::generate!({
                path: "../wit",
                world: "billing-source",
                runtime_path: "::vmauto_plugin_sdk::wit_bindgen::rt",
            });
        }

        struct __VmautoPlugin;

        impl __vmauto_bindings::exports::vmauto::plugin::source::Guest for __VmautoPlugin {
            fn parse(
                req: __vmauto_bindings::vmauto::plugin::types::Request,
            ) -> ::core::result::Result<
                ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::Event>,
                __vmauto_bindings::vmauto::plugin::types::PluginError,
            > {
                use __vmauto_bindings::vmauto::plugin::types as t;
                let pairs = |v: ::std::vec::Vec<t::Pair>| v.into_iter().map(|p| (p.name, p.value)).collect();
                let req = $crate::Request::new(
                    req.source,
                    req.path,
                    pairs(req.headers),
                    req.body,
                    pairs(req.settings),
                );
                match $parse(&req) {
                    Ok(events) => Ok(events.into_iter().map(__vmauto_event_out).collect()),
                    Err(e) => Err(__vmauto_error_out(e)),
                }
            }
        }

        $crate::__vmauto_conversions!(__vmauto_bindings);

        __vmauto_bindings::export!(__VmautoPlugin with_types_in __vmauto_bindings);
    };
}

/// Exports a plan-mapper plugin: `export_mapper!(choose)` with
/// `fn choose(req: &MappingRequest) -> Result<Choice>`.
///
/// Both ways the contract asks (1.2) call `choose`: with the catalogue in the request
/// (`choose`), and with the catalogue the instance keeps (`keep-catalogue`, then
/// `choose-kept` per event), in which case the request's `templates` and `mappings` are the
/// kept ones, not copied per call.
#[macro_export]
macro_rules! export_mapper {
    ($choose:path) => {
        mod __vmauto_bindings {
            $crate::wit_bindgen::generate!({
                path: "../wit",
                world: "plan-mapper",
                runtime_path: "::vmauto_plugin_sdk::wit_bindgen::rt",
            });
        }

        struct __VmautoPlugin;

        ::std::thread_local! {
            /// The last request `choose-kept` answered, holding the kept catalogue.
            static __VMAUTO_KEPT: ::core::cell::RefCell<$crate::MappingRequest> =
                ::core::cell::RefCell::new($crate::MappingRequest::empty());
        }

        fn __vmauto_pairs_in(
            v: ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::Pair>,
        ) -> ::std::vec::Vec<(String, String)> {
            v.into_iter().map(|p| (p.name, p.value)).collect()
        }

        fn __vmauto_event_in(e: __vmauto_bindings::vmauto::plugin::types::Event) -> $crate::Event {
            use __vmauto_bindings::vmauto::plugin::types as t;
            $crate::Event {
                kind: match e.kind {
                    t::EventKind::Subscribe => $crate::Kind::Subscribe,
                    t::EventKind::Cancel => $crate::Kind::Cancel,
                    t::EventKind::Suspend => $crate::Kind::Suspend,
                    t::EventKind::Resume => $crate::Kind::Resume,
                    t::EventKind::ChangePlan => $crate::Kind::ChangePlan,
                    t::EventKind::Ignore => $crate::Kind::Ignore,
                },
                source_event_id: e.source_event_id,
                occurred_at: e.occurred_at.map(|i| match i {
                    t::Instant::UnixSeconds(s) => $crate::Instant::UnixSeconds(s),
                    t::Instant::Rfc3339(s) => $crate::Instant::Rfc3339(s),
                }),
                subscription_id: e.subscription_id,
                customer: $crate::Customer { id: e.customer.id, name: e.customer.name, email: e.customer.email },
                plan_key: e.plan_key,
                attributes: __vmauto_pairs_in(e.attributes),
                image: e.image,
                hostname: e.hostname,
                location: e.location,
            }
        }

        fn __vmauto_catalogue_in(
            templates: ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::Template>,
            mappings: ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::PlanMapping>,
        ) -> (::std::vec::Vec<$crate::Template>, ::std::vec::Vec<$crate::Mapping>) {
            let templates = templates
                .into_iter()
                .map(|t| $crate::Template {
                    name: t.name,
                    enabled: t.enabled,
                    cores: t.cores,
                    memory_mb: t.memory_mb,
                    disk_gb: t.disk_gb,
                    extra: __vmauto_pairs_in(t.extra),
                })
                .collect();
            let mappings = mappings
                .into_iter()
                .map(|m| $crate::Mapping { source: m.source, plan_key: m.plan_key, template: m.template })
                .collect();
            (templates, mappings)
        }

        fn __vmauto_choice_out(
            choice: $crate::Result<$crate::Choice>,
        ) -> ::core::result::Result<
            __vmauto_bindings::vmauto::plugin::types::Choice,
            __vmauto_bindings::vmauto::plugin::types::PluginError,
        > {
            use __vmauto_bindings::vmauto::plugin::types as t;
            match choice {
                Ok($crate::Choice::Template(name)) => Ok(t::Choice::Template(name)),
                Ok($crate::Choice::None(reason)) => Ok(t::Choice::None(reason)),
                Err(e) => Err(__vmauto_error_out(e)),
            }
        }

        impl __vmauto_bindings::exports::vmauto::plugin::mapper::Guest for __VmautoPlugin {
            fn choose(
                req: __vmauto_bindings::vmauto::plugin::types::MappingRequest,
            ) -> ::core::result::Result<
                __vmauto_bindings::vmauto::plugin::types::Choice,
                __vmauto_bindings::vmauto::plugin::types::PluginError,
            > {
                let (templates, mappings) = __vmauto_catalogue_in(req.templates, req.mappings);
                let req = $crate::MappingRequest {
                    source: req.source,
                    event: __vmauto_event_in(req.event),
                    templates,
                    mappings,
                    settings: __vmauto_pairs_in(req.settings),
                };
                __vmauto_choice_out($choose(&req))
            }

            fn keep_catalogue(
                templates: ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::Template>,
                mappings: ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::PlanMapping>,
            ) {
                let (templates, mappings) = __vmauto_catalogue_in(templates, mappings);
                __VMAUTO_KEPT.with_borrow_mut(|kept| {
                    kept.templates = templates;
                    kept.mappings = mappings;
                });
            }

            fn choose_kept(
                source: ::std::string::String,
                event: __vmauto_bindings::vmauto::plugin::types::Event,
                settings: ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::Pair>,
            ) -> ::core::result::Result<
                __vmauto_bindings::vmauto::plugin::types::Choice,
                __vmauto_bindings::vmauto::plugin::types::PluginError,
            > {
                __VMAUTO_KEPT.with_borrow_mut(|req| {
                    req.source = source;
                    req.event = __vmauto_event_in(event);
                    req.settings = __vmauto_pairs_in(settings);
                    __vmauto_choice_out($choose(req))
                })
            }
        }

        $crate::__vmauto_conversions!(__vmauto_bindings);

        __vmauto_bindings::export!(__VmautoPlugin with_types_in __vmauto_bindings);
    };
}

/// Conversions from this crate's types to the generated ones (used by the export macros).
#[doc(hidden)]
#[macro_export]
macro_rules! __vmauto_conversions {
    ($b:ident) => {
        #[allow(dead_code)]
        fn __vmauto_error_out(e: $crate::Error) -> $b::vmauto::plugin::types::PluginError {
            use $b::vmauto::plugin::types as t;
            match e {
                $crate::Error::Malformed(m) => t::PluginError::Malformed(m),
                $crate::Error::MissingField(f) => t::PluginError::MissingField(f),
                $crate::Error::WrongType { field, expected } => {
                    t::PluginError::WrongType(t::WrongType { field, expected })
                }
                $crate::Error::BadSetting(m) => t::PluginError::BadSetting(m),
                $crate::Error::Other(m) => t::PluginError::Other(m),
            }
        }

        #[allow(dead_code)]
        fn __vmauto_event_out(e: $crate::Event) -> $b::vmauto::plugin::types::Event {
            use $b::vmauto::plugin::types as t;
            t::Event {
                kind: match e.kind {
                    $crate::Kind::Subscribe => t::EventKind::Subscribe,
                    $crate::Kind::Cancel => t::EventKind::Cancel,
                    $crate::Kind::Suspend => t::EventKind::Suspend,
                    $crate::Kind::Resume => t::EventKind::Resume,
                    $crate::Kind::ChangePlan => t::EventKind::ChangePlan,
                    $crate::Kind::Ignore => t::EventKind::Ignore,
                },
                source_event_id: e.source_event_id,
                occurred_at: e.occurred_at.map(|i| match i {
                    $crate::Instant::UnixSeconds(s) => t::Instant::UnixSeconds(s),
                    $crate::Instant::Rfc3339(s) => t::Instant::Rfc3339(s),
                }),
                subscription_id: e.subscription_id,
                customer: t::Customer { id: e.customer.id, name: e.customer.name, email: e.customer.email },
                plan_key: e.plan_key,
                attributes: e.attributes.into_iter().map(|(name, value)| t::Pair { name, value }).collect(),
                image: e.image,
                hostname: e.hostname,
                location: e.location,
            }
        }
    };
}
