//! Which collection a request addresses, and the plain types of list and watch results.
//!
//! Owns: [`Resource`] and the constants for every kind the project touches, REST path building
//! (`/api/v1/...` for the core group, `/apis/{group}/{version}/...` otherwise), [`ListOptions`],
//! [`ObjectList`], [`WatchEvent`]. Must not: do I/O; this module is pure.

/// A REST collection: group, version, plural, and whether it lives in namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

const fn core(plural: &'static str, namespaced: bool) -> Resource {
    Resource { group: "", version: "v1", plural, namespaced }
}

pub const NODES: Resource = core("nodes", false);
pub const PODS: Resource = core("pods", true);
pub const NAMESPACES: Resource = core("namespaces", false);
pub const CONFIGMAPS: Resource = core("configmaps", true);
/// core/v1 events (what `kubectl describe` shows).
pub const EVENTS: Resource = core("events", true);
pub const SERVICEACCOUNTS: Resource = core("serviceaccounts", true);
/// authentication.k8s.io/v1 TokenReview (create only; nothing is stored).
pub const TOKENREVIEWS: Resource =
    Resource { group: "authentication.k8s.io", version: "v1", plural: "tokenreviews", namespaced: false };
/// authorization.k8s.io/v1 SubjectAccessReview (create only; nothing is stored).
pub const SUBJECTACCESSREVIEWS: Resource = Resource {
    group: "authorization.k8s.io",
    version: "v1",
    plural: "subjectaccessreviews",
    namespaced: false,
};
pub const LEASES: Resource =
    Resource { group: "coordination.k8s.io", version: "v1", plural: "leases", namespaced: true };
pub const IPPOOLS: Resource =
    Resource { group: "nv-ipam.nvidia.com", version: "v1alpha1", plural: "ippools", namespaced: true };
pub const CIDRPOOLS: Resource =
    Resource { group: "nv-ipam.nvidia.com", version: "v1alpha1", plural: "cidrpools", namespaced: true };
/// One per Node in the pools' namespace: what that node needs from every pool.
pub const NODEBLOCKSETS: Resource =
    Resource { group: "nv-ipam.nvidia.com", version: "v1alpha1", plural: "nodeblocksets", namespaced: true };

impl Resource {
    /// The collection path. A namespaced resource with `ns = None` addresses all namespaces
    /// (list/watch); `ns` is ignored for cluster-scoped resources.
    pub fn collection_path(&self, ns: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let (true, Some(ns)) = (self.namespaced, ns) {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(self.plural);
        p
    }

    /// The path of one object.
    pub fn object_path(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(ns))
    }

    /// The path of an object's status subresource.
    pub fn status_path(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}/status", self.object_path(ns, name))
    }
}

/// Filters and representation for list and watch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Ask for `PartialObjectMetadata(List)` (metadata only, via the Accept header): nodes are
    /// big, and node selection needs only names and labels.
    pub metadata_only: bool,
}

/// The field selector `field=value`, the value escaped as apimachinery's `fields.EscapeValue`
/// does, so that a value from an object (a node name in a pool's status) stays one term.
pub fn field_equals(field: &str, value: &str) -> String {
    let mut v = String::with_capacity(value.len());
    for ch in value.chars() {
        if matches!(ch, '\\' | ',' | '=') {
            v.push('\\');
        }
        v.push(ch);
    }
    format!("{field}={v}")
}

/// Accept header for a metadata-only list.
pub const ACCEPT_METADATA_LIST: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
/// Accept header for a metadata-only get or watch.
pub const ACCEPT_METADATA: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

/// All items of a list (every page) and the list's resourceVersion, to watch from.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList<T> {
    pub items: Vec<T>,
    pub resource_version: String,
}

/// One event of a watch stream. `ERROR` events become `Err(KubeError::Status{..})`.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    /// Nothing changed for us up to `resource_version`; resume from there.
    Bookmark {
        resource_version: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_field_selector_value_stays_one_term() {
        assert_eq!(field_equals("spec.nodeName", "node-1.example"), "spec.nodeName=node-1.example");
        assert_eq!(
            field_equals("spec.nodeName", "a,spec.nodeName!=b"),
            "spec.nodeName=a\\,spec.nodeName!\\=b"
        );
        assert_eq!(field_equals("spec.nodeName", "a\\b"), "spec.nodeName=a\\\\b");
    }

    use super::*;

    #[test]
    fn paths() {
        assert_eq!(NODES.collection_path(Some("x")), "/api/v1/nodes");
        assert_eq!(NODES.object_path(None, "n1"), "/api/v1/nodes/n1");
        assert_eq!(CONFIGMAPS.collection_path(Some("ns1")), "/api/v1/namespaces/ns1/configmaps");
        assert_eq!(PODS.collection_path(None), "/api/v1/pods");
        assert_eq!(
            IPPOOLS.status_path(Some("kube-system"), "pool1"),
            "/apis/nv-ipam.nvidia.com/v1alpha1/namespaces/kube-system/ippools/pool1/status"
        );
        assert_eq!(
            LEASES.object_path(Some("nv-ipam"), "ctl"),
            "/apis/coordination.k8s.io/v1/namespaces/nv-ipam/leases/ctl"
        );
        assert_eq!(NAMESPACES.object_path(None, "a"), "/api/v1/namespaces/a");
        assert_eq!(CIDRPOOLS.collection_path(None), "/apis/nv-ipam.nvidia.com/v1alpha1/cidrpools");
        assert_eq!(TOKENREVIEWS.collection_path(Some("x")), "/apis/authentication.k8s.io/v1/tokenreviews");
        assert_eq!(
            SUBJECTACCESSREVIEWS.collection_path(None),
            "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        );
        assert_eq!(
            SERVICEACCOUNTS.object_path(Some("nv-ipam"), "v"),
            "/api/v1/namespaces/nv-ipam/serviceaccounts/v"
        );
    }
}
