//! Plugins that misbehave: each failure is contained in its call, named, and the host (and
//! the next call) carry on. The hostile plugins are hand-written WebAssembly text, and
//! echo.wat is a well-behaved one, showing the contract is language-neutral.

use std::time::Instant;

use vmauto::billing::EventKind;
use vmauto::plugin_host::{Limits, Origin, PluginError, PluginRuntime};

use super::support::{component_from_wat, one, request};

/// A billing-source module whose `parse` runs `body` (the memory and allocator of echo.wat).
fn source_module(body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get 3) (i32.const 7)) (i32.const -8))))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get 3) (i32.const 16)) (i32.const 1))))))
    (local.get $ptr))
  (func (export "vmauto:plugin/source@1.0.0#parse") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    {body})
  (func (export "cabi_post_vmauto:plugin/source@1.0.0#parse") (param i32)
    (global.set $heap (i32.const 4096)))
)"#
    )
}

/// A runtime with the hostile plugin `name`, plus the well-behaved echo plugin.
fn runtime_with(name: &str, body: &str) -> PluginRuntime {
    let runtime = PluginRuntime::new(Limits::default()).expect("runtime");
    runtime.load(name, &component_from_wat(&source_module(body), "billing-source"), Origin::Bundled).expect("load");
    let echo = component_from_wat(include_str!("echo.wat"), "billing-source");
    runtime.load("echo", &echo, Origin::Bundled).expect("load echo");
    runtime
}

fn call(runtime: &PluginRuntime, name: &str) -> Result<Vec<vmauto::billing::BillingEvent>, PluginError> {
    runtime.parse_blocking(name, &request("src", "/webhooks/src", b"{}".to_vec(), &[]))
}

/// The host still works: the echo plugin answers after the hostile call.
fn host_still_serves(runtime: &PluginRuntime) {
    let e = one(call(runtime, "echo"));
    assert_eq!(e.kind, EventKind::Ignore);
}

#[test]
fn a_plugin_in_webassembly_text_works() {
    let runtime = runtime_with("noop", "(i32.const 0) (unreachable)");
    for _ in 0..3 {
        let e = one(runtime.parse_blocking("echo", &request("my-source", "/api/vps/provision", b"{}".to_vec(), &[])));
        assert_eq!(e.kind, EventKind::Ignore);
        assert_eq!(e.subscription_id.as_deref(), Some("my-source"));
        assert_eq!(e.customer.id, "/api/vps/provision");
    }
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let runtime = runtime_with("spin", "(loop $l (br $l)) (i32.const 0)");
    let started = Instant::now();
    let err = call(&runtime, "spin").unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("time budget"), "{err}");
    let took = started.elapsed();
    println!("endless loop stopped after {took:?} (deadline {:?})", Limits::default().deadline);
    host_still_serves(&runtime);
    // The next call gets a fresh instance and fails the same way, no worse.
    assert!(matches!(call(&runtime, "spin"), Err(PluginError::Timeout { .. })));
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let runtime = runtime_with("bomb", "(loop $l (drop (memory.grow (i32.const 64))) (br $l)) (i32.const 0)");
    let err = call(&runtime, "bomb").unwrap_err();
    assert!(
        matches!(err, PluginError::MemoryLimit { limit_bytes, .. } if limit_bytes == Limits::default().memory_bytes),
        "{err:?}"
    );
    host_still_serves(&runtime);
}

#[test]
fn a_trap_is_reported_as_a_crash() {
    let runtime = runtime_with("crash", "(unreachable)");
    let err = call(&runtime, "crash").unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    host_still_serves(&runtime);
}

#[test]
fn a_huge_output_is_refused() {
    // 20 MiB of zeroes read as events: 218,453 valid (empty) subscribe events.
    let body = "(drop (memory.grow (i32.const 320)))
      (i32.store8 (i32.const 1024) (i32.const 0))
      (i32.store (i32.const 1028) (i32.const 65536))
      (i32.store (i32.const 1032) (i32.const 218453))
      (i32.const 1024)";
    let runtime = runtime_with("flood", body);
    let err = call(&runtime, "flood").unwrap_err();
    assert!(matches!(err, PluginError::BadOutput { .. }), "{err:?}");
    assert!(err.to_string().contains("218453 events"), "{err}");
    host_still_serves(&runtime);
}

#[test]
fn an_out_of_bounds_result_is_bad_output() {
    let body = "(i32.store8 (i32.const 1024) (i32.const 0))
      (i32.store (i32.const 1028) (i32.const 65536))
      (i32.store (i32.const 1032) (i32.const 1000000000))
      (i32.const 1024)";
    let runtime = runtime_with("liar", body);
    let err = call(&runtime, "liar").unwrap_err();
    assert!(matches!(err, PluginError::BadOutput { .. } | PluginError::Trap { .. }), "{err:?}");
    host_still_serves(&runtime);
}

#[test]
fn components_with_imports_or_other_exports_are_refused() {
    let runtime = PluginRuntime::new(Limits::default()).expect("runtime");
    // A core module is not a component.
    let core = wat::parse_str(source_module("(i32.const 0)")).expect("wat");
    let err = runtime.load("core", &core, Origin::Bundled).unwrap_err().to_string();
    assert!(err.contains("core WebAssembly module"), "{err}");
    // A component exporting nothing of the contract.
    let empty = wat::parse_str("(component)").expect("wat");
    let err = runtime.load("empty", &empty, Origin::Bundled).unwrap_err().to_string();
    assert!(err.contains("exports neither"), "{err}");
    // A component that imports a host function (e.g. a WASI clock) gets nothing.
    let importer = wat::parse_str(r#"(component (import "wasi:clocks/wall-clock@0.2.0" (instance)))"#).expect("wat");
    let err = runtime.load("importer", &importer, Origin::Bundled).unwrap_err().to_string();
    assert!(err.contains("imports wasi:clocks"), "{err}");
}
