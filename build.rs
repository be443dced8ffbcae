//! Link options for release binaries (the linker is LLD, Rust's default on x86-64 Linux):
//! `-z pack-relative-relocs` stores the position-independent binary's relocations packed
//! (RELR, glibc 2.36+: Debian 12 and the container image, which carries the build host's
//! libc) instead of 24 bytes each — about 3 MB less binary. Development builds link as they
//! are.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if release && linux {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
