//! Builds the restorer (crates/crac-restorer, its own cargo workspace) and
//! leaves the binary at `$OUT_DIR/crac-restorer`, which `restore.rs` embeds.
//!
//! The restorer is a static `no_std` program at a fixed address with its own
//! profile and flags (`crates/crac-restorer/.cargo/config.toml`), so it is
//! built by a nested `cargo build` run from its directory, with the outer
//! build's flags removed. `--offline --locked`: its registry dependencies
//! (`xxhash-rust` through crac-image, and `lz4_flex` for compressed images)
//! are locked in its own `Cargo.lock` to the versions the root `Cargo.lock`
//! has, which the outer build fetched before it ran this script.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the restorer must lie (crac-image `RESTORER_ZONE_BASE`), and how
/// much of the zone its own image may take (the restorer maps its metadata
/// 16 MiB in).
const ZONE_BASE: u64 = 0x2a00_0000_0000;
const IMAGE_MAX: u64 = 0x0100_0000;
const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let crates = manifest.parent().expect("crates dir").to_path_buf();
    let restorer = crates.join("crac-restorer");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    println!("cargo:rerun-if-changed=build.rs");
    for p in [
        "crac-restorer/src",
        "crac-restorer/Cargo.toml",
        "crac-restorer/Cargo.lock",
        "crac-restorer/build.rs",
        "crac-restorer/link.ld",
        "crac-restorer/.cargo/config.toml",
        "crac-sys/src",
        "crac-sys/Cargo.toml",
        "crac-image/src",
        "crac-image/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", crates.join(p).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = out.join("restorer-target");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&restorer)
        .arg("build")
        .arg("--release")
        .arg("--offline")
        .arg("--locked")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(restorer.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags of the outer build must not leak into the restorer's.
    for (k, _) in env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if matches!(
            k,
            "RUSTFLAGS"
                | "CARGO_ENCODED_RUSTFLAGS"
                | "CARGO_TARGET_DIR"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "CLIPPY_ARGS"
                | "CARGO_PRIMARY_PACKAGE"
        ) || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_TARGET_")
        {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "could not run {} to build the restorer: {e}",
            Path::new(&cargo).display()
        )
    });
    assert!(
        status.success(),
        "building the restorer failed ({status}); see the output above"
    );

    let built = target_dir
        .join(TARGET)
        .join("release")
        .join("crac-restorer");
    let bytes =
        std::fs::read(&built).unwrap_or_else(|e| panic!("could not read {}: {e}", built.display()));
    if let Err(e) = check_elf(&bytes) {
        panic!("the restorer {} is unusable: {e}", built.display());
    }
    let dest = out.join("crac-restorer");
    std::fs::write(&dest, &bytes)
        .unwrap_or_else(|e| panic!("could not write {}: {e}", dest.display()));
}

/// The restorer must be a static ET_EXEC whose loadable segments all lie in
/// `[ZONE_BASE, ZONE_BASE + IMAGE_MAX)`, with no interpreter.
fn check_elf(b: &[u8]) -> Result<(), String> {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    if b.len() < 64 || &b[0..4] != b"\x7fELF" || b[4] != 2 {
        return Err("not a 64-bit ELF file".into());
    }
    if u16_at(16) != 2 {
        return Err(format!(
            "ELF type {} is not ET_EXEC (static, non-PIE)",
            u16_at(16)
        ));
    }
    let (phoff, phentsize, phnum) = (
        u64_at(32) as usize,
        u16_at(54) as usize,
        u16_at(56) as usize,
    );
    if phoff + phentsize * phnum > b.len() {
        return Err("program headers lie past the end of the file".into());
    }
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let (ty, vaddr, memsz) = (u32_at(o), u64_at(o + 16), u64_at(o + 40));
        match ty {
            1 if vaddr < ZONE_BASE || vaddr + memsz > ZONE_BASE + IMAGE_MAX => {
                return Err(format!(
                    "segment {vaddr:#x}+{memsz:#x} lies outside {ZONE_BASE:#x}+{IMAGE_MAX:#x}"
                ));
            }
            2 | 3 => return Err("it is dynamically linked".into()),
            _ => {}
        }
    }
    Ok(())
}
