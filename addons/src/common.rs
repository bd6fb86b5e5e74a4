//! Pieces every add-on's objects share: accounts, bindings, the locked-down
//! container security context, the control-plane tolerations.

use serde_json::{json, Value};

use crate::NAMESPACE;

pub fn service_account(name: &str, automount: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "automountServiceAccountToken": automount,
    })
}

fn sa_subject(sa: &str) -> Value {
    json!([{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}])
}

pub fn cluster_role(name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules,
    })
}

pub fn cluster_role_binding(name: &str, role: &str, sa: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": sa_subject(sa),
    })
}

/// A RoleBinding in `ns` of the Role `role` (in `ns`) to our `sa`.
pub fn role_binding(name: &str, ns: &str, role: &str, sa: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": sa_subject(sa),
    })
}

/// Non-root (`uid`), no privilege escalation, read-only root file system,
/// every capability dropped.
pub fn locked_down(uid: u32) -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// Tolerations that let an add-on run on control planes (a one-node
/// cluster has nothing else).
pub fn control_plane_tolerations() -> Value {
    json!([
        {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"},
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
    ])
}

/// `probe` that starts `seconds` after the container.
pub fn delayed(mut probe: Value, seconds: u32) -> Value {
    probe["initialDelaySeconds"] = json!(seconds);
    probe
}

/// An HTTP(S) GET probe.
pub fn probe(scheme: &str, path: &str, port: u16, period: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"scheme": scheme, "path": path, "port": port},
        "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures,
    })
}
