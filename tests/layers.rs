//! The crate's layers (docs/design.md, "Module layers"): every `crate::<module>` a file under
//! `src/<module>` names must sit in a lower layer than its own module, so the pure core never
//! reaches up into a shell and the three programs never reach into each other. A new module
//! gets a row in `LAYERS`; a new edge that goes up fails here, naming the file and the import.

use std::fs;
use std::path::{Path, PathBuf};

/// Lower numbers are lower layers: a module may name only modules with a smaller number.
const LAYERS: &[(&str, u8)] = &[
    // leaves: no `crate::` imports at all
    ("ip", 0),
    ("prescan", 0),
    ("bounded", 0),
    ("oflags", 0),
    ("metrics", 0),
    ("deadline", 0),
    ("slots", 0),
    ("default_paths", 0),
    // small shells over the leaves
    ("http", 1),
    ("logging", 1),
    ("replace", 1),
    ("kube", 1),
    ("health", 2),
    ("flags", 2),
    ("store", 2),
    // the API types (their Kubernetes resource names come from `kube::resource`)
    ("api", 2),
    // the reference's flag table and its component-base flags (over `flags` and `logging`)
    ("upstream_flags", 3),
    // planners and allocator over the API types; the wire protocol
    ("alloc", 3),
    ("protocol", 3),
    // what a node holds, as its allocations endpoint and the CLI see it (over alloc and store)
    ("inventory", 4),
    // the programs
    ("node", 5),
    ("cni", 5),
    ("controller", 5),
    ("cli", 5),
];

/// `#[macro_export]` macros live at the crate root but belong to a module.
const MACROS: &[(&str, &str)] = &[("with_kind", "alloc"), ("with_pool_kind", "alloc")];

fn layer(module: &str) -> Option<u8> {
    let module = MACROS.iter().find(|(m, _)| *m == module).map_or(module, |(_, owner)| owner);
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file under `src/` belongs to: `src/node/server.rs` and `src/node.rs` → `node`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "bin").then(|| name.to_string())
}

/// Every `crate::<name>` in `text`.
fn crate_imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        // `$crate::` inside macros names the crate root the same way
        let rest = &text[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_or_beside_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let own = layer(&module).unwrap_or_else(|| panic!("{module}: add it to LAYERS in tests/layers.rs"));
        let text = fs::read_to_string(file).expect("read source");
        for dep in crate_imports(&text) {
            let owner = MACROS.iter().find(|(m, _)| *m == dep).map_or(dep.as_str(), |(_, o)| o);
            if owner == module {
                continue; // its own submodules and macros
            }
            match layer(&dep) {
                None => broken.push(format!("{}: crate::{dep} is not in LAYERS", file.display())),
                Some(theirs) if theirs >= own => broken.push(format!(
                    "{}: {module} (layer {own}) imports crate::{dep} (layer {theirs})",
                    file.display()
                )),
                Some(_) => {}
            }
        }
    }
    assert!(broken.is_empty(), "imports that go up or sideways:\n{}", broken.join("\n"));
}

#[test]
fn every_module_of_lib_rs_has_a_layer() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ").and_then(|l| l.strip_suffix(';')) {
            assert!(layer(name).is_some(), "{name}: add it to LAYERS in tests/layers.rs");
        }
    }
}

#[test]
fn the_check_sees_an_upward_import() {
    // the checker itself can fail: an alloc file naming crate::node would be reported
    assert!(layer("node") > layer("alloc"));
    assert_eq!(crate_imports("use crate::node::server; $crate::alloc::x"), ["node", "alloc"]);
}
