//! The controls a vector database workload must have, one [`Rule`] each.
//!
//! Pod rules read the pod spec and yield at most one finding per workload. Container
//! rules yield at most one finding per container, init containers included.
//! Where a field exists at both levels (`runAsUser`, `runAsNonRoot`,
//! `seccompProfile`), the container's value overrides the pod's, as in Kubernetes.

use serde::Serialize;

use crate::image::{ImageReference, Pinning};
use crate::network_policy::IngressPolicy;
use crate::secrets::{literal_secret, SecretReason};
use crate::workload::{Container, Workload};
use crate::yaml::Node;

/// A control that a vector database workload must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The container runs as a non-root user.
    NonRoot,
    /// The container's root filesystem is read-only.
    ReadOnlyRootFilesystem,
    /// The container is not privileged and cannot gain privileges.
    PrivilegeEscalation,
    /// The container drops every capability and adds none.
    Capabilities,
    /// The container has a seccomp profile other than Unconfined.
    Seccomp,
    /// The pod shares no namespace with the node.
    HostNamespaces,
    /// The pod mounts no node directory.
    HostPath,
    /// The container image is pinned by digest or release tag.
    ImagePinned,
    /// The container has CPU and memory limits.
    ResourceLimits,
    /// No literal environment value looks like a secret.
    SecretEnv,
    /// A NetworkPolicy selects the pods for ingress.
    NetworkPolicy,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 11] = [
        Rule::NonRoot,
        Rule::ReadOnlyRootFilesystem,
        Rule::PrivilegeEscalation,
        Rule::Capabilities,
        Rule::Seccomp,
        Rule::HostNamespaces,
        Rule::HostPath,
        Rule::ImagePinned,
        Rule::ResourceLimits,
        Rule::SecretEnv,
        Rule::NetworkPolicy,
    ];

    /// Returns the rule's id in reports.
    pub fn id(self) -> &'static str {
        match self {
            Rule::NonRoot => "non-root",
            Rule::ReadOnlyRootFilesystem => "read-only-root-filesystem",
            Rule::PrivilegeEscalation => "privilege-escalation",
            Rule::Capabilities => "capabilities",
            Rule::Seccomp => "seccomp",
            Rule::HostNamespaces => "host-namespaces",
            Rule::HostPath => "host-path",
            Rule::ImagePinned => "image-pinned",
            Rule::ResourceLimits => "resource-limits",
            Rule::SecretEnv => "secret-env",
            Rule::NetworkPolicy => "network-policy",
        }
    }

    /// Returns how to fix a finding of this rule.
    pub fn fix(self) -> &'static str {
        match self {
            Rule::NonRoot => "set securityContext.runAsNonRoot: true and a non-zero runAsUser in the pod or container securityContext",
            Rule::ReadOnlyRootFilesystem => "set securityContext.readOnlyRootFilesystem: true on the container and mount an emptyDir where it must write",
            Rule::PrivilegeEscalation => "set securityContext.allowPrivilegeEscalation: false on the container and remove privileged: true",
            Rule::Capabilities => "set securityContext.capabilities.drop: [ALL] on the container and remove capabilities.add",
            Rule::Seccomp => "set securityContext.seccompProfile.type to RuntimeDefault, or to Localhost with a localhostProfile",
            Rule::HostNamespaces => "remove hostNetwork, hostPID and hostIPC from the pod spec",
            Rule::HostPath => "replace the hostPath volumes with a PersistentVolumeClaim, emptyDir, Secret or ConfigMap",
            Rule::ImagePinned => "pin the image by digest (IMAGE@sha256:...) or by a release tag such as 1.2.3",
            Rule::ResourceLimits => "set resources.limits.cpu and resources.limits.memory on the container",
            Rule::SecretEnv => "put the value in a Secret and mount it as a file, or use env.valueFrom.secretKeyRef",
            Rule::NetworkPolicy => "add a NetworkPolicy in the workload's namespace whose podSelector matches the pod labels and that admits only the clients",
        }
    }

    /// Returns whether the rule applies to each container rather than to the pod.
    pub fn is_per_container(self) -> bool {
        !matches!(
            self,
            Rule::HostNamespaces | Rule::HostPath | Rule::NetworkPolicy
        )
    }
}

/// Checks a pod rule and returns the finding's message, or `None` when it holds.
pub fn check_pod(rule: Rule, workload: &Workload, policies: &[IngressPolicy]) -> Option<String> {
    match rule {
        Rule::HostNamespaces => host_namespaces(workload),
        Rule::HostPath => host_path(workload),
        Rule::NetworkPolicy => network_policy(workload, policies),
        _ => None,
    }
}

/// Checks a container rule and returns the finding's message, or `None` when it holds.
pub fn check_container(rule: Rule, workload: &Workload, container: &Container) -> Option<String> {
    let pod_security = |key: &str| workload.pod_field("securityContext")?.get(key);
    // The container's securityContext field, else the pod's.
    let effective = |key: &str| container.security_field(key).or_else(|| pod_security(key));
    match rule {
        Rule::NonRoot => non_root(effective("runAsUser"), effective("runAsNonRoot")),
        Rule::ReadOnlyRootFilesystem => read_only_root(container),
        Rule::PrivilegeEscalation => privilege_escalation(container),
        Rule::Capabilities => capabilities(container),
        Rule::Seccomp => seccomp(effective("seccompProfile")),
        Rule::ImagePinned => image_pinned(container),
        Rule::ResourceLimits => resource_limits(container),
        Rule::SecretEnv => secret_env(container),
        _ => None,
    }
}

fn non_root(run_as_user: Option<&Node>, run_as_non_root: Option<&Node>) -> Option<String> {
    let user = run_as_user.and_then(Node::as_int);
    if user == Some(0) {
        return Some("runs as root: runAsUser is 0".to_string());
    }
    let non_root = run_as_non_root.and_then(Node::as_bool) == Some(true);
    if non_root || user.is_some_and(|user| user > 0) {
        return None;
    }
    Some(
        "may run as root: neither runAsNonRoot: true nor a non-zero runAsUser is set, so the image's user applies"
            .to_string(),
    )
}

fn read_only_root(container: &Container) -> Option<String> {
    let read_only = container
        .security_field("readOnlyRootFilesystem")
        .and_then(Node::as_bool);
    (read_only != Some(true))
        .then(|| "the root filesystem is writable: readOnlyRootFilesystem is not true".to_string())
}

fn privilege_escalation(container: &Container) -> Option<String> {
    let mut problems = Vec::new();
    if container
        .security_field("privileged")
        .and_then(Node::as_bool)
        == Some(true)
    {
        problems.push("the container is privileged");
    }
    let escalation = container
        .security_field("allowPrivilegeEscalation")
        .and_then(Node::as_bool);
    if escalation != Some(false) {
        problems
            .push("allowPrivilegeEscalation is not false, so setuid programs can gain privileges");
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

fn capabilities(container: &Container) -> Option<String> {
    let capabilities = container.security_field("capabilities");
    let list = |key: &str| -> Vec<&str> {
        capabilities
            .map(|capabilities| capabilities.items_at(key))
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.as_text())
            .collect()
    };
    let mut problems = Vec::new();
    if !list("drop").contains(&"ALL") {
        problems.push("capabilities.drop does not contain ALL".to_string());
    }
    let added = list("add");
    if !added.is_empty() {
        problems.push(format!("capabilities.add adds {}", added.join(", ")));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

fn seccomp(profile: Option<&Node>) -> Option<String> {
    let Some(profile) = profile else {
        return Some(
            "no seccompProfile in the pod or container securityContext, so the container runs Unconfined unless the kubelet's --seccomp-default is on"
                .to_string(),
        );
    };
    match profile.get("type").and_then(Node::as_text) {
        Some("RuntimeDefault") => None,
        Some("Localhost") => {
            let file = profile.get("localhostProfile").and_then(Node::as_text);
            file.is_none_or(str::is_empty)
                .then(|| "seccompProfile type Localhost has no localhostProfile".to_string())
        }
        Some("Unconfined") => Some("seccompProfile type is Unconfined".to_string()),
        Some(other) => Some(format!("seccompProfile type {other:?} is not a known type")),
        None => Some("seccompProfile has no type".to_string()),
    }
}

fn image_pinned(container: &Container) -> Option<String> {
    let Some(image) = container.image() else {
        return Some("the container has no image".to_string());
    };
    let reference = ImageReference::parse(image);
    match reference.pinning() {
        Pinning::Digest | Pinning::VersionTag => None,
        Pinning::NoTag => Some(format!("image {image} has no tag or digest, so it pulls latest")),
        Pinning::Latest => Some(format!("image {image} uses the latest tag")),
        Pinning::OtherTag => Some(format!(
            "image {image} has a tag that is not a release version (MAJOR.MINOR or longer) and no digest"
        )),
        Pinning::InvalidDigest => Some(format!("image {image} has an invalid digest")),
    }
}

fn resource_limits(container: &Container) -> Option<String> {
    let limits = container.node.path(&["resources", "limits"]);
    let missing: Vec<&str> = ["cpu", "memory"]
        .into_iter()
        .filter(|resource| {
            limits
                .and_then(|limits| limits.get(resource))
                .and_then(Node::as_text)
                .is_none()
        })
        .collect();
    (!missing.is_empty()).then(|| format!("resources.limits has no {}", missing.join(" or ")))
}

fn secret_env(container: &Container) -> Option<String> {
    let mut flagged = Vec::new();
    for variable in container.node.items_at("env") {
        let Some(name) = variable.get("name").and_then(Node::as_text) else {
            continue;
        };
        let Some(value) = variable.get("value").and_then(Node::as_text) else {
            continue;
        };
        // Only the name and the reason are reported: the value is the secret.
        match literal_secret(name, value) {
            Some(SecretReason::Name) => flagged.push(format!("{name} (by its name)")),
            Some(SecretReason::Value) => flagged.push(format!("{name} (by its value)")),
            None => {}
        }
    }
    (!flagged.is_empty()).then(|| {
        format!(
            "env sets literal values that look like secrets: {}",
            flagged.join(", ")
        )
    })
}

fn host_namespaces(workload: &Workload) -> Option<String> {
    let shared: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|key| workload.pod_field(key).and_then(Node::as_bool) == Some(true))
        .collect();
    (!shared.is_empty()).then(|| {
        format!(
            "the pod shares the node's namespaces: {} set to true",
            shared.join(", ")
        )
    })
}

fn host_path(workload: &Workload) -> Option<String> {
    let volumes = workload
        .pod_spec
        .map(|spec| spec.items_at("volumes"))
        .unwrap_or_default();
    let names: Vec<&str> = volumes
        .iter()
        .filter(|volume| volume.get("hostPath").is_some())
        .map(|volume| {
            volume
                .get("name")
                .and_then(Node::as_text)
                .unwrap_or("(unnamed)")
        })
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "the pod mounts node directories through hostPath volumes: {}",
            names.join(", ")
        )
    })
}

fn network_policy(workload: &Workload, policies: &[IngressPolicy]) -> Option<String> {
    let namespace = workload.object.namespace;
    if policies
        .iter()
        .any(|policy| policy.selects(namespace, &workload.pod_labels))
    {
        return None;
    }
    let labels: Vec<String> = workload
        .pod_labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let labels = if labels.is_empty() {
        "no labels".to_string()
    } else {
        format!("labels {}", labels.join(","))
    };
    let namespace = namespace.map_or_else(
        || "without a namespace".to_string(),
        |namespace| format!("in namespace {namespace}"),
    );
    Some(format!(
        "no NetworkPolicy in the checked files selects these pods ({labels}, {namespace}) for ingress"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_ids() {
        for rule in Rule::ALL {
            let json = serde_json::to_value(rule).unwrap();
            assert_eq!(json, rule.id());
        }
    }
}
