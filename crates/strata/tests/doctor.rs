//! `strata doctor` on this machine: every check appears with a plausible verdict, the JSON
//! parses and carries the configuration in effect, and problems it can see (a world-readable
//! root, a missing daemon, a broken config) turn into WARN or FAIL with the right exit code.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::Daemon;
use serde_json::Value;

fn doctor(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("run strata doctor")
}

fn doctor_for(d: &Daemon, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--root".as_ref(),
        d.root.as_os_str(),
        "--address".as_ref(),
        d.socket.as_os_str(),
        // Never read the machine's /etc/strata/config.toml in a test.
        "--config".as_ref(),
    ];
    let config = d.dir.path().join("doctor.toml");
    if !config.exists() {
        std::fs::write(&config, "").unwrap();
    }
    args.push(config.as_os_str());
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    doctor(&args)
}

/// The (status, detail) of check `name` in the text report.
fn line<'a>(text: &'a str, name: &str) -> (&'a str, &'a str) {
    text.lines()
        .find_map(|l| {
            let (status, rest) = l.split_once("  ")?;
            let rest = rest.trim_start();
            let detail = rest.strip_prefix(name)?.trim_start();
            Some((status.trim(), detail))
        })
        .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
}

/// With a daemon running on a fresh root: every check is there; the root, socket, d_type,
/// filesystem and overlay checks pass on a machine that runs Strata's tests; the exit code is
/// 0 exactly when nothing FAILs; the JSON has the same checks and the configuration. Needs
/// root (the overlay mount probe mounts).
#[test]
fn reports_this_machine() {
    // The overlay mount probe mounts, which needs root: this test fails rather than leave it
    // unchecked (CI runs as root).
    assert!(
        rustix::process::geteuid().is_root(),
        "this test checks doctor's overlay mount probe and needs root: run it as root (scripts/test does)"
    );
    let d = Daemon::start("overlay");
    let out = doctor_for(&d, &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "config",
        "settings",
        "kernel",
        "root",
        "filesystem",
        "space",
        "overlayfs",
        "index=off",
        "userxattr",
        "redirect_dir",
        "metacopy",
        "d_type",
        "idmapped mounts",
        "reflink",
        "socket",
    ] {
        let (status, detail) = line(&text, name);
        assert!(["OK", "WARN", "FAIL"].contains(&status), "{name}: {status}");
        assert!(!detail.is_empty(), "{name} gives no reason");
    }
    assert_eq!(line(&text, "root").0, "OK", "{text}");
    assert!(line(&text, "root").1.contains("mode 0700"));
    assert_eq!(line(&text, "socket").0, "OK", "{text}");
    assert!(
        line(&text, "socket").1.contains("mode 0660")
            && line(&text, "socket").1.contains("a daemon answers")
    );
    assert_eq!(line(&text, "d_type").0, "OK");
    assert!(line(&text, "filesystem").1.contains("magic 0x"));
    assert!(line(&text, "kernel").1.starts_with("Linux "));
    assert!(line(&text, "idmapped mounts").1.contains("no live probe"));
    assert_eq!(line(&text, "overlay mount").0, "OK", "{text}");
    let fails = text.lines().filter(|l| l.starts_with("FAIL")).count();
    assert_eq!(out.status.code(), Some(i32::from(fails > 0)), "{text}");
    assert!(text.lines().last().unwrap().starts_with("doctor: "));
    assert!(
        std::fs::read_dir(&d.root).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("probe")),
        "probes leave nothing in the root"
    );

    let out = doctor_for(&d, &["--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), text.lines().count() - 1);
    for c in checks {
        assert!(
            ["OK", "WARN", "FAIL"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["name"].is_string() && c["detail"].is_string());
    }
    assert_eq!(report["config"]["root"], d.root.to_str().unwrap());
    assert_eq!(report["config"]["backend"], "overlay");
}

/// A root others can read is a WARN, a missing socket a WARN (no daemon), a config with an
/// unknown key a FAIL with exit code 1.
#[test]
fn flags_what_is_wrong() {
    let mut d = Daemon::start("overlay");
    d.stop();
    std::fs::set_permissions(&d.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = doctor_for(&d, &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, detail) = line(&text, "root");
    assert_eq!(status, "WARN");
    assert!(detail.contains("chmod 700"), "{detail}");
    let (status, detail) = line(&text, "socket");
    assert_eq!(status, "WARN");
    assert!(detail.contains("absent"), "{detail}");

    std::fs::write(d.dir.path().join("doctor.toml"), "roots = \"/x\"\n").unwrap();
    let out = doctor_for(&d, &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line(&text, "config").0, "FAIL", "{text}");
    assert_eq!(out.status.code(), Some(1));
}
