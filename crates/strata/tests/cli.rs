//! The client subcommands (`strata ls`, `tree`, `info`, `usage`, `prepare`, `view`, `commit`,
//! `rm`, `label`, `mounts`, `cleanup`, `completions`) against a live daemon: their tables,
//! their JSON, and their one-line errors with a non-zero exit code.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BACKENDS, Daemon};
use serde_json::Value;

/// Runs `strata ARGS --address <the daemon's socket>`.
fn strata(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .arg("--address")
        .arg(&d.socket)
        .output()
        .expect("run strata")
}

/// Runs a command that must succeed; returns its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = strata(d, args);
    assert!(
        out.status.success(),
        "strata {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code `code`; returns its stderr.
fn fails(d: &Daemon, args: &[&str], code: i32) -> String {
    let out = strata(d, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "strata {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The directory a snapshot's mounts write into, from `strata mounts --json`.
fn writable_dir(d: &Daemon, key: &str) -> PathBuf {
    let mounts = json(&ok(d, &["mounts", key, "--json"]));
    let m = &mounts[0];
    if m["type"] == "bind" {
        return PathBuf::from(m["source"].as_str().unwrap());
    }
    let upper = m["options"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.as_str().unwrap().strip_prefix("upperdir="))
        .expect("upperdir");
    PathBuf::from(upper)
}

/// base (committed, one file) ← mid (committed, labelled) ← top (active), plus a view `v` of
/// mid, all made through the CLI.
fn build_tree(d: &Daemon) {
    ok(d, &["prepare", "base-a", "--label", "team=infra"]);
    std::fs::write(writable_dir(d, "base-a").join("hello"), vec![7u8; 10_000]).unwrap();
    ok(d, &["commit", "base", "base-a"]);
    ok(d, &["prepare", "mid-a", "base"]);
    std::fs::write(writable_dir(d, "mid-a").join("mid"), b"mid").unwrap();
    ok(d, &["commit", "mid", "mid-a", "--label", "layer=2"]);
    ok(d, &["prepare", "top", "mid"]);
    ok(d, &["view", "v", "mid"]);
}

/// `ls` prints a table of every snapshot (key, parent, kind, time, labels) and honours
/// positional and `--filter` filters, OR-ed; `--json` gives containerd's info fields.
#[test]
fn ls_table_filters_and_json() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        build_tree(&d);
        let table = ok(&d, &["ls"]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["KEY", "PARENT", "KIND", "CREATED", "LABELS"]
        );
        let rows: Vec<Vec<&str>> = lines[1..]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 4, "{table}");
        assert_eq!(rows[0][0], "base");
        assert_eq!(rows[0][1], "committed", "no parent: the column is blank");
        assert_eq!(rows[1][..3], ["mid", "base", "committed"]);
        assert_eq!(rows[1][4], "layer=2");
        assert_eq!(rows[2][..3], ["top", "mid", "active"]);
        assert_eq!(rows[3][..3], ["v", "mid", "view"]);

        let active = ok(&d, &["ls", "kind==active"]);
        assert_eq!(active.lines().count(), 2, "{active}");
        assert!(active.lines().nth(1).unwrap().starts_with("top "));

        let either = json(&ok(
            &d,
            &["ls", "kind==view", "--filter", "labels.layer==2", "--json"],
        ));
        let names: Vec<&str> = either
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["mid", "v"], "filters are OR-ed");

        let all = json(&ok(&d, &["ls", "--json"]));
        let mid = &all.as_array().unwrap()[1];
        assert_eq!(mid["name"], "mid");
        assert_eq!(mid["parent"], "base");
        assert_eq!(mid["kind"], "committed");
        assert_eq!(mid["labels"]["layer"], "2");
        let created = mid["created"].as_str().unwrap();
        assert!(
            created.ends_with('Z') && created.len() == "2024-01-01T00:00:00.000000000Z".len(),
            "{created}"
        );
    }
}

/// `tree` draws parents above children with their kinds; `--json` nests children.
#[test]
fn tree_text_and_json() {
    let d = Daemon::start("overlay");
    build_tree(&d);
    ok(&d, &["prepare", "lone"]);
    assert_eq!(
        ok(&d, &["tree"]),
        "base (committed)\n\
         └── mid (committed)\n\
         \u{20}   ├── top (active)\n\
         \u{20}   └── v (view)\n\
         lone (active)\n"
    );
    let tree = json(&ok(&d, &["tree", "--json"]));
    assert_eq!(tree[0]["name"], "base");
    assert_eq!(tree[0]["children"][0]["name"], "mid");
    assert_eq!(tree[0]["children"][0]["children"][1]["kind"], "view");
    assert_eq!(tree[1]["name"], "lone");
    assert_eq!(tree[1]["children"].as_array().unwrap().len(), 0);
}

/// `info` shows Stat's fields one per line and labels below; `--json` the same as `ls`.
#[test]
fn info_text_and_json() {
    let d = Daemon::start("overlay");
    build_tree(&d);
    let text = ok(&d, &["info", "mid"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "name:    mid");
    assert_eq!(lines[1], "parent:  base");
    assert_eq!(lines[2], "kind:    committed");
    assert!(lines[3].starts_with("created: ") && lines[4].starts_with("updated: "));
    assert_eq!(lines[5..], ["labels:", "  layer=2"]);
    let info = json(&ok(&d, &["info", "top", "--json"]));
    assert_eq!(info["kind"], "active");
    assert_eq!(info["parent"], "mid");
    assert_eq!(info["labels"], serde_json::json!({}));
}

/// `usage KEY` reports one snapshot (human sizes, or bytes with `--bytes`); without KEY every
/// snapshot and a TOTAL row that is their sum; `--json` carries the same numbers.
#[test]
fn usage_one_and_all() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        build_tree(&d);
        let c_usage = |key: &str| {
            let v = json(&ok(&d, &["usage", key, "--json"]));
            assert_eq!(v["key"], key);
            (v["size"].as_i64().unwrap(), v["inodes"].as_i64().unwrap())
        };
        let (base_size, base_inodes) = c_usage("base");
        assert!(base_size >= 10_000, "{backend}: base holds a 10 kB file");
        assert_eq!(base_inodes, 2, "{backend}: the root and one file");

        let exact = ok(&d, &["usage", "base", "--bytes"]);
        assert_eq!(
            exact
                .lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["base", &base_size.to_string(), "2"]
        );
        let human = ok(&d, &["usage", "base"]);
        assert!(human.contains(" KiB "), "{human}");

        let all = json(&ok(&d, &["usage", "--json"]));
        let rows = all["snapshots"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        let sum: i64 = rows.iter().map(|r| r["size"].as_i64().unwrap()).sum();
        let inodes: i64 = rows.iter().map(|r| r["inodes"].as_i64().unwrap()).sum();
        assert_eq!(all["total"]["size"].as_i64().unwrap(), sum);
        assert_eq!(all["total"]["inodes"].as_i64().unwrap(), inodes);
        assert_eq!(all["total"]["snapshots"], 4);
        assert_eq!(rows[0]["kind"], "committed");

        let table = ok(&d, &["usage", "--bytes"]);
        let last = table.lines().last().unwrap();
        assert_eq!(
            last.split_whitespace().collect::<Vec<_>>(),
            [
                "TOTAL",
                "4",
                "snapshots",
                &sum.to_string(),
                &inodes.to_string()
            ]
        );
    }
}

/// `label k=v` sets, `label k=` removes, other labels stay; the command prints the result.
#[test]
fn label_sets_and_removes() {
    let d = Daemon::start("overlay");
    build_tree(&d);
    assert_eq!(
        ok(&d, &["label", "mid", "a=1", "b=2"]),
        "a=1\nb=2\nlayer=2\n"
    );
    assert_eq!(ok(&d, &["label", "mid", "a=", "layer=3"]), "b=2\nlayer=3\n");
    let info = json(&ok(&d, &["label", "mid", "b=", "--json"]));
    assert_eq!(info["labels"], serde_json::json!({"layer": "3"}));
    let stderr = fails(&d, &["label", "mid", "novalue"], 2);
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
}

/// `rm` removes several snapshots (children first), reports each refusal on its own line,
/// and `cleanup` then reclaims the directories.
#[test]
fn rm_and_cleanup() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        build_tree(&d);
        let before = d.snapshot_dirs().len();
        assert_eq!(before, 4);
        let stderr = fails(&d, &["rm", "base", "top", "nope"], 1);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines,
            [
                "strata: rm base: FailedPrecondition: cannot remove snapshot \"base\": it has children",
                "strata: rm nope: NotFound: snapshot \"nope\" not found",
                "strata: rm: 2 of 3 snapshots not removed",
            ]
        );
        ok(&d, &["rm", "v", "mid", "base"]);
        assert_eq!(ok(&d, &["ls", "--json"]).trim(), "[]");
        assert_eq!(d.snapshot_dirs().len(), 4, "directories wait for cleanup");
        ok(&d, &["cleanup"]);
        assert!(d.snapshot_dirs().is_empty(), "{:?}", d.snapshot_dirs());
    }
}

/// `mounts` prints command lines that work when pasted into a shell: a bind for a base
/// layer, a read-only bind for a view of one layer, an overlay with every directory for a
/// stacked active snapshot (each mounted here with /bin/sh and checked).
#[test]
fn mounts_are_pasteable() {
    let d = Daemon::start("overlay");
    build_tree(&d);
    ok(&d, &["prepare", "solo"]);
    ok(&d, &["view", "vb", "base"]);

    let bind = ok(&d, &["mounts", "solo"]);
    let src = writable_dir(&d, "solo");
    assert_eq!(bind, format!("mount --bind {} /mnt\n", src.display()));
    let ro = ok(&d, &["mounts", "vb", "--target", "/tmp/x y"]);
    assert!(
        ro.starts_with("mount --bind -o ro /") && ro.ends_with(" '/tmp/x y'\n"),
        "{ro}"
    );
    let overlay = ok(&d, &["mounts", "top"]);
    assert!(
        overlay.starts_with("mount -t overlay overlay -o ") && overlay.ends_with(" /mnt\n"),
        "{overlay}"
    );
    for option in ["lowerdir=", "upperdir=", "workdir="] {
        assert!(overlay.contains(option), "{option} missing: {overlay}");
    }
    let as_json = json(&ok(&d, &["mounts", "top", "--json"]));
    assert_eq!(as_json[0]["type"], "overlay");
    assert_eq!(as_json[0]["command"], overlay.trim_end());

    let committed = fails(&d, &["mounts", "mid"], 1);
    assert!(
        committed.starts_with("strata: mounts mid: FailedPrecondition: "),
        "{committed}"
    );

    assert!(
        rustix::process::geteuid().is_root(),
        "the second half of this test mounts and needs root: run it as root (scripts/test does)"
    );
    // Paste each printed line into a shell, mounting on a scratch directory.
    for (key, expect) in [("top", "mid"), ("vb", "hello")] {
        let target = tempfile::tempdir().unwrap();
        let line = ok(
            &d,
            &["mounts", key, "--target", target.path().to_str().unwrap()],
        );
        let _guard = Unmount(target.path().to_owned());
        let status = Command::new("sh").arg("-c").arg(&line).status().unwrap();
        assert!(status.success(), "{line}");
        assert!(
            target.path().join(expect).exists(),
            "{key}: {expect} not visible"
        );
        let status = Command::new("umount").arg(target.path()).status().unwrap();
        assert!(status.success());
    }
}

/// Unmounts (lazily) on drop if still mounted, so a failed assertion leaves no mount.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(path))
}

/// Every failure is one line `strata: <what>: <gRPC code>: <message>` on stderr and exit 1;
/// bad arguments exit 2; a missing daemon names the socket.
#[test]
fn errors_are_one_line() {
    let d = Daemon::start("overlay");
    build_tree(&d);
    let one_line = |stderr: &str| {
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr.trim_end().to_owned()
    };
    assert_eq!(
        one_line(&fails(&d, &["info", "nope"], 1)),
        "strata: info nope: NotFound: snapshot \"nope\" not found"
    );
    assert_eq!(
        one_line(&fails(&d, &["prepare", "top", "mid"], 1)),
        "strata: prepare top: AlreadyExists: snapshot \"top\" already exists"
    );
    assert_eq!(
        one_line(&fails(&d, &["commit", "x", "v"], 1)),
        "strata: commit x v: FailedPrecondition: snapshot \"v\" is not active (it is view); only \
         active snapshots can be committed"
    );
    assert!(
        one_line(&fails(&d, &["ls", "kind=="], 1)).starts_with("strata: ls: InvalidArgument: ")
    );
    assert_eq!(
        one_line(&fails(&d, &["ls", "--snapshotter", "zfs"], 1)),
        "strata: ls: InvalidArgument: snapshotter not loaded: zfs"
    );
    assert!(
        one_line(&fails(&d, &["usage", "nope"], 1)).starts_with("strata: usage nope: NotFound: ")
    );
    let gone = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["ls", "--address", "/nonexistent/strata.sock"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1));
    let stderr = String::from_utf8(gone.stderr).unwrap();
    assert!(
        stderr.starts_with("strata: connect /nonexistent/strata.sock: No such file or directory"),
        "{stderr}"
    );
    fails(&d, &["prepare", "k", "--label", "=v"], 2);
}

/// `--snapshotter` picks the backend every request addresses: a snapshot made on native is
/// listed there and not on the default (overlay).
#[test]
fn snapshotter_selects_the_backend() {
    let d = Daemon::start("overlay");
    ok(&d, &["prepare", "on-native", "--snapshotter", "native"]);
    ok(&d, &["prepare", "on-default"]);
    let native = json(&ok(&d, &["ls", "--snapshotter", "strata-native", "--json"]));
    assert_eq!(native.as_array().unwrap().len(), 1);
    assert_eq!(native[0]["name"], "on-native");
    let default = json(&ok(&d, &["ls", "--json"]));
    assert_eq!(default[0]["name"], "on-default");
    assert_eq!(default.as_array().unwrap().len(), 1);
    let mounts = ok(&d, &["mounts", "on-native", "--snapshotter", "native"]);
    assert!(mounts.contains("/native/snapshots/"), "{mounts}");
}

/// `completions` prints a script for each shell that knows the subcommands.
#[test]
fn completions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["strata", "prepare", "fsck", "doctor", "umount"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}
