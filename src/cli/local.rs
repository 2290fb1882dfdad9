//! `kubectl-nv_ipam --store-file` on a standalone host (ipam-node with `--pools-file`, no
//! cluster): the store is read with [`crate::store::Snapshot`] (read-only, under the shared
//! lock, beside a running daemon), the pools file (when given) says the blocks, and the report
//! of the one node is built as the node's endpoint would build it. The same `who-has`, `usage`
//! and `check` then run on it; checks that need a cluster (pods, nodes) do not apply.
//!
//! Owns: reading the two files. Must not: write either (the store is never opened for writing,
//! the pools file is only read).

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::alloc::{NodePool, PoolKind, standalone_node_pool};
use crate::api::{AnyPool, Object};
use crate::inventory::{self, Served};
use crate::oflags::{O_NOCTTY, O_NONBLOCK};
use crate::store::{self, Snapshot};

use super::args::Args;
use super::report::View;

/// Largest pools file read: as `ipam-node --pools-file` reads it (16 MiB).
pub const MAX_POOLS_FILE_BYTES: u64 = 16 << 20;

/// The node name: `--node-name`, else `$NODE_NAME`, else the host name (as ipam-node's
/// standalone deployments name themselves).
pub fn node_name(args: &Args) -> String {
    args.node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
        .or_else(|| fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_default()
}

/// The pools file's pool objects: a regular file only, opened without blocking, bounded.
fn read_pools(path: &Path) -> Result<Vec<AnyPool>, String> {
    let err = |e: &dyn std::fmt::Display| format!("pools file {}: {e}", path.display());
    let meta = fs::metadata(path).map_err(|e| err(&e))?;
    if !meta.file_type().is_file() {
        return Err(err(&"not a regular file"));
    }
    let f =
        OpenOptions::new().read(true).custom_flags(O_NONBLOCK | O_NOCTTY).open(path).map_err(|e| err(&e))?;
    let mut bytes = Vec::new();
    f.take(MAX_POOLS_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| err(&e))?;
    if bytes.len() as u64 > MAX_POOLS_FILE_BYTES {
        return Err(err(&format!("larger than {MAX_POOLS_FILE_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|e| err(&e))?;
    let manifest = crate::api::decode(&text).map_err(|e| err(&e))?;
    Ok(manifest
        .objects
        .into_iter()
        .filter_map(|o| match o {
            Object::Pool(p) => Some(p),
            Object::Node(_) => None,
        })
        .collect())
}

fn node_pool_of<K: PoolKind>(p: &K::Pool, node: &str) -> Option<NodePool> {
    let v = K::validate(p).ok()?;
    match K::status(p) {
        Some(s) => K::node_pool(&v, node, s).ok(),
        None => standalone_node_pool::<K>(&v, node).ok(),
    }
}

/// The view of this host. `Err` is fatal (exit 3): the store cannot be read.
pub fn gather(args: &Args, store_file: &Path) -> Result<View, String> {
    let node = node_name(args);
    let snap = Snapshot::read(store_file).map_err(|e| e.to_string())?;
    let pools = match &args.pools_file {
        Some(p) => read_pools(p)?,
        None => Vec::new(),
    };
    let served: Vec<NodePool> =
        pools.iter().filter_map(|p| crate::with_pool_kind!(p, p, K => node_pool_of::<K>(p, &node))).collect();
    let served_refs: Vec<Served<'_>> = served.iter().map(|pool| Served { pool, held: None }).collect();
    let report = inventory::build(&node, &served_refs, &snap.state, store::unix_ms());
    let mut answers = std::collections::BTreeMap::new();
    answers.insert(node.clone(), Ok(report));
    Ok(View {
        namespace: String::new(),
        pools,
        nodes: None,
        answers,
        pods: Default::default(),
        standalone_node: Some(node),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pools_file_at_the_size_limit_is_read_and_one_byte_more_is_refused() {
        let dir = std::env::temp_dir().join(format!("nv-ipam-cli-pools-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("pools.yaml");
        let pool = "apiVersion: nv-ipam.nvidia.com/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec: {subnet: 10.0.0.0/24, perNodeBlockSize: 4}\n";
        let mut text = pool.to_string();
        text.push_str(&"#".repeat(MAX_POOLS_FILE_BYTES as usize - pool.len()));
        fs::write(&p, &text).expect("write");
        assert_eq!(read_pools(&p).expect("at the limit").len(), 1);
        text.push('#');
        fs::write(&p, &text).expect("write");
        let e = read_pools(&p).expect_err("over");
        assert!(e.contains(&format!("larger than {MAX_POOLS_FILE_BYTES} bytes")), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
