//! The modules of each crate form layers: no import circle between a crate's top-level modules
//! (ARCHITECTURE.md, "Invariants"). A module that needs something from one above it is a sign
//! that a type lives in the wrong place (the oracle's `facts` module exists for this reason).
//!
//! The graph is read from the sources: an edge `a → b` for every `crate::b` that appears in
//! `a`'s code (comments and doc comments are left out, so a doc link is not an import).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's top-level modules and, for each, the modules its code names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("the crate's src directory") {
        let path = entry.expect("a directory entry").path();
        let (module, files) = if path.is_dir() {
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (name, rust_files(&path))
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path
                .file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            if name == "lib" || name == "main" {
                continue;
            }
            (name, vec![path])
        } else {
            continue;
        };
        let uses = graph.entry(module.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a source file");
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or_default();
                let mut rest = code;
                while let Some(i) = rest.find("crate::") {
                    rest = &rest[i + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        uses.insert(name);
                    }
                }
            }
        }
    }
    // Names that are not modules of this crate (re-exported items at the root) are no edge.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|m| modules.contains(m));
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a module directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// A circle in `graph`, if there is one, as the modules along it.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search with colours: 1 on the current path, 2 finished.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(m.to_string(), 1);
        path.push(m.to_string());
        for n in &graph[m] {
            match colour.get(n.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == n).unwrap_or(0);
                    let mut circle = path[start..].to_vec();
                    circle.push(n.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(n, graph, colour, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        colour.insert(m.to_string(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for m in graph.keys() {
        if colour.get(m).copied().unwrap_or(0) == 0
            && let Some(c) = visit(m, graph, &mut colour, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

#[test]
fn the_pure_cores_have_no_import_circle() {
    for krate in ["oracle/core/src", "agent/core/src"] {
        let graph = module_graph(&workspace().join(krate));
        assert!(graph.len() >= 3, "{krate}: {graph:?}");
        if let Some(c) = find_circle(&graph) {
            panic!("{krate}: modules import each other: {}", c.join(" → "));
        }
    }
}

#[test]
fn the_daemon_modules_have_no_import_circle() {
    // The oracle's service modules, and the agent's, outside their cores.
    for krate in ["oracle/src", "agent/src"] {
        let graph = module_graph(&workspace().join(krate));
        if let Some(c) = find_circle(&graph) {
            panic!("{krate}: modules import each other: {}", c.join(" → "));
        }
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("a.rs"), "use crate::b::X;\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "use crate::c::Y; // crate::a\n").unwrap();
    std::fs::write(dir.path().join("c.rs"), "fn f() { crate::a::g() }\n").unwrap();
    std::fs::write(dir.path().join("d.rs"), "/// [`crate::a`]\nfn h() {}\n").unwrap();
    let graph = module_graph(dir.path());
    assert_eq!(graph["d"], BTreeSet::new(), "a doc link is not an import");
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    std::fs::write(dir.path().join("c.rs"), "fn f() {}\n").unwrap();
    assert_eq!(find_circle(&module_graph(dir.path())), None);
}
