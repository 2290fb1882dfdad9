//! The `plan` command: every pool of a pools file planned for the nodes of a nodes file, the
//! result being exactly the objects the controller would write.
//!
//! Per pool: validate; when valid, select the nodes (nodeSelector), plan with the previous
//! status kept stable, and fill `status.allocations`. An invalid pool keeps its previous status
//! unchanged (the reference wipes it) and is reported. Nodes left without a block/prefix are
//! reported as warnings.
//!
//! Owns: [`run_plan`] (reads the two files), [`plan`] (pure), [`PlanReport`], [`PlanError`].
//! Must not: print or exit; the binary does.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::alloc::PoolKind;
use crate::api::selector::select_nodes;
use crate::api::{AnyPool, Manifest, ManifestError, Node, Object, PoolErrors, PoolKey};

/// Largest pools or nodes file read, so a wrong path (a disk image, /dev/zero) fails fast
/// instead of exhausting memory; 64 MiB holds well over 100k nodes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why the plan command could not run.
#[derive(Debug)]
pub enum PlanError {
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    TooLarge {
        flag: &'static str,
        path: PathBuf,
        bytes: u64,
    },
    /// Boxed: a manifest error carries positions and messages, and errors stay small to move.
    Decode {
        flag: &'static str,
        path: PathBuf,
        source: Box<ManifestError>,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Read { flag, path, source } => {
                write!(f, "{flag} {}: cannot read: {source}: check the path", path.display())
            }
            PlanError::TooLarge { flag, path, bytes } => write!(
                f,
                "{flag} {}: {bytes} bytes is more than the {MAX_FILE_BYTES} allowed: split the file",
                path.display()
            ),
            PlanError::Decode { flag, path, source } => write!(f, "{flag} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for PlanError {}

/// A node that got no block or prefix in a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unallocated {
    pub pool: PoolKey,
    pub node: String,
}

impl fmt::Display for Unallocated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.pool.pool_type.info();
        write!(
            f,
            "{} {:?}: no free {} for node {}: {}",
            info.name, self.pool.name, info.unit, self.node, info.no_free_fix
        )
    }
}

/// The outcome of planning: the pools to write, and what to report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanReport {
    /// Every pool, in input order, with its new (or, when invalid, unchanged) status.
    pub pools: Vec<AnyPool>,
    pub invalid: Vec<PoolErrors>,
    pub unallocated: Vec<Unallocated>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [AnyPool],
}

impl PlanReport {
    /// The pools as a pretty-printed `{"apiVersion":"v1","kind":"List","items":[...]}`.
    pub fn to_json_pretty(&self) -> String {
        let list = List { api_version: "v1", kind: "List", items: &self.pools };
        serde_json::to_string_pretty(&list).expect("pool types serialize: string keys, no floats")
    }
}

/// Reads both files and plans. Objects of other known kinds are ignored: Nodes in the pools
/// file, pools in the nodes file.
pub fn run_plan(pools: &Path, nodes: &Path) -> Result<PlanReport, PlanError> {
    let pools = read_manifest("--pools", pools)?;
    let nodes = read_manifest("--nodes", nodes)?;
    let nodes: Vec<Node> = nodes.nodes().cloned().collect();
    Ok(plan(&pools, &nodes))
}

fn read_manifest(flag: &'static str, path: &Path) -> Result<Manifest, PlanError> {
    let read_err = |source| PlanError::Read { flag, path: path.to_path_buf(), source };
    let bytes = std::fs::metadata(path).map_err(read_err)?.len();
    if bytes > MAX_FILE_BYTES {
        return Err(PlanError::TooLarge { flag, path: path.to_path_buf(), bytes });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    crate::api::decode(&text).map_err(|source| PlanError::Decode {
        flag,
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Plans every pool of `pools` for `nodes` (pure).
pub fn plan(pools: &Manifest, nodes: &[Node]) -> PlanReport {
    let mut report = PlanReport::default();
    for o in &pools.objects {
        match o {
            Object::Pool(p) => crate::with_pool_kind!(p, p, K => plan_pool::<K>(p, nodes, &mut report)),
            Object::Node(_) => {} // a pools file may carry nodes; they are not planned
        }
    }
    report
}

fn plan_pool<K: PoolKind>(p: &K::Pool, nodes: &[Node], report: &mut PlanReport) {
    let mut out = p.clone();
    match K::validate(p) {
        Ok(v) => {
            let names = select_nodes(K::node_selector(&v), nodes);
            let planned = K::plan(&v, &names, K::allocations(p));
            let key = PoolKey::new(K::TYPE, K::pool_name(&v));
            report
                .unallocated
                .extend(planned.unallocated.into_iter().map(|node| Unallocated { pool: key.clone(), node }));
            K::set_allocations(&mut out, planned.allocations);
        }
        Err(e) => report.invalid.push(e),
    }
    report.pools.push(K::into_any(out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode;

    #[test]
    fn plans_valid_pools_and_keeps_invalid_ones() {
        let pools = decode(
            "kind: IPPool\nmetadata: {name: a}\nspec: {subnet: 10.0.0.0/29, perNodeBlockSize: 3}\n---\n\
             kind: IPPool\nmetadata: {name: b}\nspec: {subnet: 10.0.0.0/29, perNodeBlockSize: 0}\n\
             status: {allocations: [{nodeName: x, startIP: 10.0.0.1, endIP: 10.0.0.3}]}\n",
        )
        .expect("decodes");
        let nodes = vec![Node::new("n1", &[]), Node::new("n2", &[]), Node::new("n3", &[])];
        let r = plan(&pools, &nodes);
        assert_eq!(r.invalid.len(), 1);
        assert_eq!(r.invalid[0].to_string(), "ippool \"b\": spec.perNodeBlockSize: must be at least 1");
        assert_eq!(r.unallocated.len(), 1);
        assert_eq!(
            r.unallocated[0].to_string(),
            "ippool \"a\": no free block for node n3: widen the subnet, lower perNodeBlockSize or shrink the \
             exclusions"
        );
        let AnyPool::Ip(b) = &r.pools[1] else { panic!("b is an ippool") };
        assert_eq!(b.allocations()[0].node_name, "x", "invalid pool keeps its status");
    }
}
