//! The compile cache: compiled plugins kept on disk, keyed by their content, loaded again
//! after a restart; a damaged cache entry is compiled afresh, never trusted.

use vmauto::billing::EventKind;
use vmauto::plugin_host::{Limits, PluginRuntime};

use super::support::{fixture, one, request};

/// A runtime over `dir` with the bundled plugins; returns it with its (hits, misses).
fn start(dir: &std::path::Path) -> (PluginRuntime, usize, usize) {
    let runtime = PluginRuntime::with_disk_cache(Limits::default(), dir).expect("runtime");
    let failures = runtime.load_all(None);
    assert!(failures.is_empty(), "bundled plugins failed to load: {failures:?}");
    let (cache_dir, hits, misses) = runtime.disk_cache().expect("a disk cache");
    assert_eq!(cache_dir, dir.canonicalize().unwrap());
    (runtime, hits, misses)
}

/// Every cached artifact under `dir`.
fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                found.push(path);
            }
        }
    }
    found
}

fn works(runtime: &PluginRuntime) {
    let req = request("ghl", "/webhooks/ghl", fixture("ghl-workflow-subscribe.json"), &[]);
    let e = one(runtime.parse_blocking("ghl-workflow", &req));
    assert_eq!(e.kind, EventKind::Subscribe);
}

#[test]
fn a_restart_loads_compiled_plugins_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("plugin-cache");
    let bundled = PluginRuntime::with_plugins(Limits::default(), None).unwrap().0.list().len();

    let (first, hits, misses) = start(&cache);
    assert_eq!((hits, misses), (0, bundled), "a fresh cache compiles every plugin");
    works(&first);
    drop(first);
    let written = artifacts(&cache);
    assert!(written.len() >= bundled, "one artifact per plugin at least: {written:?}");

    let (second, hits, misses) = start(&cache);
    assert_eq!((hits, misses), (bundled, 0), "a restart compiles nothing");
    works(&second);
}

#[test]
fn a_damaged_cache_entry_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("plugin-cache");
    let (first, _, misses) = start(&cache);
    drop(first);
    for artifact in artifacts(&cache) {
        std::fs::write(&artifact, b"not a compiled plugin").unwrap();
    }
    let (second, hits, again) = start(&cache);
    assert_eq!((hits, again), (0, misses), "nothing damaged is used");
    works(&second);
}

#[test]
fn an_unusable_cache_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = PluginRuntime::with_disk_cache(Limits::default(), &file.join("cache")).err().expect("an error");
    assert!(err.to_string().contains("a-file"), "{err}");
}
