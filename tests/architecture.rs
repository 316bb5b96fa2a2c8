//! The module structure ARCHITECTURE.md describes, checked: no import
//! cycles between top-level modules, nothing below `commands` imports it,
//! the commands stay thin and no source file grows past one idea.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/apply/mod.rs` → `apply`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The text before the unit-test module, if any.
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// Top-level module → the top-level modules it names through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let from = module_of(&src, &f);
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(from.clone()).or_default();
        for piece in without_tests(&text).split("crate::").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != from {
                deps.insert(name);
            }
        }
    }
    g
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let g = graph();
    // Depth-first search for a back edge, reporting the cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(at) = stack.iter().position(|s| s == n) {
            panic!("import cycle: {} -> {n}", stack[at..].join(" -> "));
        }
        stack.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            visit(d, g, stack, done);
        }
        stack.pop();
        done.insert(n.to_owned());
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        visit(n, &g, &mut Vec::new(), &mut done);
    }
}

#[test]
fn nothing_below_the_commands_imports_them() {
    for (module, deps) in graph() {
        if module != "lib" && module != "main" {
            assert!(
                !deps.contains("commands"),
                "{module} imports commands: engines and renderers sit below the commands"
            );
        }
    }
}

#[test]
fn commands_are_thin_and_files_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut commands = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = without_tests(&text).lines().count();
        assert!(
            lines <= 620,
            "{} has {lines} lines outside its tests; split it by idea",
            f.display()
        );
        if f.starts_with(src.join("commands")) {
            commands += text.lines().count();
        }
    }
    assert!(
        commands < 1200,
        "src/commands holds {commands} lines; move the work into an engine or output"
    );
}
