//! The command line without servers: completions are current, the mirror
//! list merges the user's file, and bad input gets exit 2 and a message that
//! names the problem.

mod lab;

use lab::{dmirror, Lab};

fn run(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    let out = dmirror(lab).args(args).output().expect("run dmirror");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 2, item 1: the committed completions are what the CLI generates.
#[test]
fn committed_completions_are_current() {
    let lab = Lab::new();
    for (shell, file) in [
        ("bash", "dmirror.bash"),
        ("zsh", "_dmirror"),
        ("fish", "dmirror.fish"),
    ] {
        let (code, generated, _) = run(&lab, &["completions", shell]);
        assert_eq!(code, 0);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("completions")
            .join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            generated == committed,
            "{} is out of date; run: cargo run -- completions {shell} > completions/{file}",
            path.display()
        );
        assert!(generated.contains("mirrors") && generated.contains("probe"));
    }
}

/// Issue 2, item 2: the user's file adds, overrides and disables entries of
/// the built-in list; `--mirrors` replaces both.
#[test]
fn user_file_merges_with_the_builtin_list() {
    let lab = Lab::new();
    let (code, out, _) = run(&lab, &["list", "--json"]);
    assert_eq!(code, 0);
    let builtin: serde_json::Value = serde_json::from_str(&out).expect("json");
    let builtin = builtin["mirrors"].as_array().expect("array").clone();
    assert!(builtin.iter().any(|m| m["name"] == "daocloud"));
    assert!(builtin.iter().any(|m| m["upstream"] == true));
    // What each mirror serves: Docker Hub at the root, another registry at
    // the root, or several under a prefix.
    assert!(builtin
        .iter()
        .any(|m| m["name"] == "daocloud" && m["registry"] == "docker.io"));
    assert!(builtin.iter().any(|m| m["registry"] == "ghcr.io"));
    assert!(builtin.iter().any(|m| m["registry"] == ""
        && m["prefix_for"]
            .as_array()
            .is_some_and(|p| p.iter().any(|r| r == "quay.io"))));

    let dir = lab.path("config/dmirror");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("mirrors.toml"),
        "[[mirror]]\nname = \"nju\"\nenabled = false\n\n[[mirror]]\nname = \"daocloud\"\nnotes = \"my note\"\n\n[[mirror]]\nname = \"home-proxy\"\nurl = \"http://192.168.1.2:5000\"\ninsecure = true\n",
    )
    .expect("write");
    let (code, out, err) = run(&lab, &["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let merged: serde_json::Value = serde_json::from_str(&out).expect("json");
    let merged = merged["mirrors"].as_array().expect("array");
    assert_eq!(merged.len(), builtin.len() + 1);
    let find = |n: &str| merged.iter().find(|m| m["name"] == n).cloned().expect(n);
    assert_eq!(find("nju")["enabled"], false);
    assert_eq!(find("daocloud")["notes"], "my note");
    assert_eq!(find("home-proxy")["url"], "http://192.168.1.2:5000/");
    assert_eq!(find("home-proxy")["insecure"], true);

    let own = lab.path("own.toml");
    std::fs::write(
        &own,
        "[[mirror]]\nname = \"only\"\nurl = \"https://only.example\"\n",
    )
    .expect("write");
    let (code, out, _) = run(
        &lab,
        &["list", "--json", "--mirrors", own.to_str().expect("utf8")],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["mirrors"].as_array().map(Vec::len), Some(1));
}

/// Issue 2, items 2 and 6: bad files, flags and references exit 2 with a
/// message naming the file, line and field or the flag.
#[test]
fn bad_input_exits_2_and_names_the_problem() {
    let lab = Lab::new();
    let bad = lab.path("bad.toml");
    std::fs::write(&bad, "[[mirror]]\nname = \"x\"\nurl = \"https://x.example\"\n\n[[mirror]]\nname = \"y\"\nurl = \"https://u:p@y.example\"\n").expect("write");
    let bad = bad.to_str().expect("utf8");
    let (code, out, err) = run(&lab, &["probe", "--mirrors", bad]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("bad.toml:7") && err.contains("`url`") && err.contains("password"),
        "{err}"
    );

    let syntax = lab.path("syntax.toml");
    std::fs::write(&syntax, "[[mirror]]\nname = \"x\"\nurl = https://x\n").expect("write");
    let (code, _, err) = run(&lab, &["list", "--mirrors", syntax.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("syntax.toml") && err.contains("line 3"),
        "{err}"
    );

    let (code, _, err) = run(&lab, &["probe", "--mirrors", "/nonexistent/m.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/m.toml"), "{err}");

    let ok = lab.mirrors_toml("ok.toml", &[("x", "http://127.0.0.1:9".into(), "")]);
    let ok = ok.to_str().expect("utf8");
    let (code, _, err) = run(
        &lab,
        &["probe", "--mirrors", ok, "--image", "Ubuntu:latest"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--image") && err.contains("Ubuntu"), "{err}");
    let (code, _, err) = run(
        &lab,
        &["probe", "--mirrors", ok, "--image", "ghcr.io/o/app"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no enabled mirror serves ghcr.io"), "{err}");
    let (code, _, err) = run(&lab, &["probe", "--mirrors", ok, "--platform", "linux"]);
    assert_eq!(code, 2);
    assert!(err.contains("--platform"), "{err}");
    let (code, _, err) = run(&lab, &["probe", "--mirrors", ok, "--timeout", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("--timeout"), "{err}");

    let off = lab.mirrors_toml(
        "off.toml",
        &[("x", "http://127.0.0.1:9".into(), "enabled = false")],
    );
    let (code, _, err) = run(&lab, &["probe", "--mirrors", off.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(err.contains("disabled"), "{err}");
}

/// Issue 15, item 5: the committed man page is what the CLI generates.
#[test]
fn committed_man_page_is_current() {
    let lab = Lab::new();
    let (code, generated, _) = run(&lab, &["man"]);
    assert_eq!(code, 0);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/dmirror.1");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == committed,
        "{} is out of date; run: cargo run -- man > man/dmirror.1",
        path.display()
    );
    assert!(generated.contains(".TH dmirror") && generated.contains("apply"));
}

/// A mirror list of `n` entries.
fn big_list(lab: &Lab, n: usize) -> std::path::PathBuf {
    let entries: Vec<(String, String)> = (0..n)
        .map(|i| (format!("m{i}"), format!("http://127.0.0.1:{}", 1024 + i)))
        .collect();
    let refs: Vec<(&str, String, &str)> = entries
        .iter()
        .map(|(n, u)| (n.as_str(), u.clone(), "notes = \"a mirror of the test\""))
        .collect();
    lab.mirrors_toml("big.toml", &refs)
}

/// Issue 15, item 2: every printing command takes --format (and -f, -j);
/// list and history print plain lines off a terminal.
#[test]
fn every_printing_command_takes_the_same_formats() {
    let lab = Lab::new();
    let list = big_list(&lab, 3);
    let l = list.to_str().unwrap();
    let (code, out, err) = run(&lab, &["list", "-m", l]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().all(|line| line.starts_with("mirror=")), "{out}");
    let (code, out, _) = run(&lab, &["list", "-m", l, "-j"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["mirrors"].as_array().map(Vec::len), Some(3));
    let (code, out, _) = run(&lab, &["list", "-m", l, "-f", "table"]);
    assert_eq!(code, 0);
    assert!(out.contains("http://127.0.0.1:1024"), "{out}");
    let (code, _, err) = run(&lab, &["list", "-m", l, "-f", "prometheus"]);
    assert_eq!(code, 2, "{err}");
    for args in [
        &["history"][..],
        &["history", "-f", "plain"],
        &["history", "-j", "-m", l],
    ] {
        let (code, _, err) = run(&lab, args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
}

/// Issue 15, item 2: a cut pipe (`| head -1`) exits 0, every time.
#[test]
fn a_cut_pipe_exits_0() {
    use std::io::Read;
    let lab = Lab::new();
    let list = big_list(&lab, 3000);
    for format in ["json", "plain", "table"] {
        for _ in 0..3 {
            let mut child = dmirror(&lab)
                .args(["list", "-m", list.to_str().unwrap(), "-f", format])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut stdout = child.stdout.take().expect("stdout");
            let mut first = [0u8; 16];
            stdout.read_exact(&mut first).expect("read");
            drop(stdout);
            let out = child.wait_with_output().expect("wait");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{format}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Bad network flags are usage errors that name the flag (exit 2).
#[test]
fn bad_proxy_and_certs_dir_are_usage_errors() {
    let lab = Lab::new();
    let list = big_list(&lab, 1);
    let l = list.to_str().unwrap();
    let (code, _, err) = run(&lab, &["probe", "-m", l, "--proxy", "ftp://x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--proxy"), "{err}");
    let (code, _, err) = run(&lab, &["probe", "-m", l, "--certs-dir", l]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--certs-dir") && err.contains("not a directory"),
        "{err}"
    );
}
