//! The aarch64 build: `packaging/build-static.sh aarch64` cross-builds a static binary with
//! Debian's toolchain, and qemu-user runs it on this x86_64 machine, where it previews
//! examples/coreos-1192 exactly as the x86_64 binary does. tests/run builds it and passes it in
//! DROPFIX_AARCH64_BIN (and runs the library's unit tests under qemu too); outside CI without
//! that variable this test builds it itself. Never skips: a missing tool fails the test.

use std::path::PathBuf;
use std::process::{Command, Output};

const QEMU: &str = "qemu-aarch64-static";

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn aarch64_bin() -> PathBuf {
    match std::env::var_os("DROPFIX_AARCH64_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI runs tests/run, which sets DROPFIX_AARCH64_BIN to the aarch64 build"
            );
            // Its own target directory: this `cargo test` holds the lock on the default one.
            let out = Command::new(top().join("packaging/build-static.sh"))
                .arg("aarch64")
                .env("CARGO_TARGET_DIR", top().join("target/static-test"))
                .output()
                .expect("running packaging/build-static.sh aarch64");
            assert!(
                out.status.success(),
                "packaging/build-static.sh aarch64 failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    }
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `dropfix ARGS` from the top of the repository, natively or under qemu-user.
fn dropfix(qemu: bool, bin: &PathBuf, args: &[&str]) -> Output {
    let mut cmd = if qemu {
        let mut c = Command::new(QEMU);
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args)
        .current_dir(top())
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (qemu: {qemu}; qemu-user-static provides {QEMU}): {e}",
                bin.display()
            )
        })
}

#[test]
fn aarch64_static_binary_under_qemu_previews_the_example_root_like_x86_64() {
    let arm = aarch64_bin();
    let header = Command::new("aarch64-linux-gnu-readelf")
        .arg("-h")
        .arg(&arm)
        .output()
        .expect("aarch64-linux-gnu-readelf (binutils-aarch64-linux-gnu)");
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(header.contains("AArch64"), "{}: {header}", arm.display());
    let native = PathBuf::from(env!("CARGO_BIN_EXE_dropfix"));

    for args in [
        &["--version"][..],
        &["fix", "--root", "examples/coreos-1192", "--dry-run"],
        &[
            "fix",
            "--root",
            "examples/coreos-1192",
            "--dry-run",
            "docker",
        ],
        &[
            "fix",
            "--root",
            "examples/coreos-1192",
            "--dry-run",
            "--format",
            "json",
        ],
        &["show", "--root", "examples/coreos-1192", "docker.service"],
        &["scan", "--root", "examples/coreos-1192"],
    ] {
        let want = dropfix(false, &native, args);
        let got = dropfix(true, &arm, args);
        eprintln!(
            "---- dropfix {} (aarch64 under qemu)\n{}",
            args.join(" "),
            show(&got)
        );
        assert_eq!(
            (got.status.code(), &got.stdout, &got.stderr),
            (want.status.code(), &want.stdout, &want.stderr),
            "dropfix {}: aarch64\n{}\nx86_64\n{}",
            args.join(" "),
            show(&got),
            show(&want)
        );
    }
    let preview = dropfix(
        true,
        &arm,
        &["fix", "--root", "examples/coreos-1192", "--dry-run"],
    );
    let text = String::from_utf8_lossy(&preview.stdout);
    assert!(preview.status.success(), "{}", show(&preview));
    assert!(text.contains("MountFlags"), "{text}");
}
