//! Contract 1.1 (`plugins/wit-1.1`, frozen): components built for it keep loading. Its
//! billing sources are bound with the current bindings (the `source` interface did not
//! change, and wasmtime finds a component's `source@1.1.0` when asked for a later 1.x); its
//! plan mappers export `choose` alone and are bound here, over the current contract types
//! (the same shapes), so their requests need no conversion.

/// The `plan-mapper` world of 1.1.
pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit-1.1",
        world: "plan-mapper",
        with: {
            "vmauto:plugin/types": crate::bindings::mapper::vmauto::plugin::types,
        },
    });
}
