//! Workloads: objects that run pods, their pod template and containers, and whether
//! they run a vector database.

use crate::image::ImageReference;
use crate::objects::{labels, Labels, Object};
use crate::yaml::Node;

/// Label values that mark a workload as a vector database, by label key.
pub const VECTOR_DATABASE_LABELS: [(&str, &[&str]); 2] = [
    ("app.kubernetes.io/component", &["vector-database"]),
    (
        "app.kubernetes.io/name",
        &["ravelin", "chroma", "chromadb", "qdrant"],
    ),
];

/// An object that runs pods.
pub struct Workload<'a> {
    pub object: &'a Object<'a>,
    /// The pod spec: `spec` of a Pod, `spec.template.spec` of a Deployment and the
    /// like, `spec.jobTemplate.spec.template.spec` of a CronJob. `None` when the
    /// manifest lacks it.
    pub pod_spec: Option<&'a Node>,
    /// The labels of the pods it creates, which NetworkPolicies select on.
    pub pod_labels: Labels,
    /// Init containers first, then containers, each in manifest order.
    pub containers: Vec<Container<'a>>,
}

/// One container of a pod spec.
pub struct Container<'a> {
    /// The container's name, or `#N` (1-based) when it has none.
    pub name: String,
    pub init: bool,
    pub node: &'a Node,
}

impl<'a> Workload<'a> {
    /// Returns the workload when `object` is a Pod, Deployment, StatefulSet, DaemonSet,
    /// ReplicaSet, ReplicationController, Job or CronJob. Only the kind is compared,
    /// not the API group.
    pub fn from_object(object: &'a Object<'a>) -> Option<Workload<'a>> {
        let node = object.node;
        let (template_metadata, pod_spec) = match object.kind {
            "Pod" => (node.get("metadata"), node.get("spec")),
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "ReplicationController"
            | "Job" => (
                node.path(&["spec", "template", "metadata"]),
                node.path(&["spec", "template", "spec"]),
            ),
            "CronJob" => (
                node.path(&["spec", "jobTemplate", "spec", "template", "metadata"]),
                node.path(&["spec", "jobTemplate", "spec", "template", "spec"]),
            ),
            _ => return None,
        };

        let mut containers = Vec::new();
        for (key, init) in [("initContainers", true), ("containers", false)] {
            let list = pod_spec.map(|spec| spec.items_at(key)).unwrap_or_default();
            for (position, container) in list.iter().enumerate() {
                let name = container
                    .get("name")
                    .and_then(Node::as_text)
                    .map_or_else(|| format!("#{}", position + 1), str::to_string);
                containers.push(Container {
                    name,
                    init,
                    node: container,
                });
            }
        }

        Some(Workload {
            object,
            pod_spec,
            pod_labels: labels(template_metadata.and_then(|metadata| metadata.get("labels"))),
            containers,
        })
    }

    /// Returns whether the workload runs a vector database: a container or init
    /// container image whose repository path contains one of
    /// [`crate::image::VECTOR_DATABASE_IMAGES`], or one of [`VECTOR_DATABASE_LABELS`]
    /// on the object or its pod template.
    pub fn runs_vector_database(&self) -> bool {
        let by_image = self.containers.iter().any(|container| {
            container
                .image()
                .is_some_and(|image| ImageReference::parse(image).is_vector_database())
        });
        let object_labels = labels(self.object.node.path(&["metadata", "labels"]));
        let by_label = [&object_labels, &self.pod_labels].iter().any(|labels| {
            VECTOR_DATABASE_LABELS.iter().any(|(key, values)| {
                labels
                    .get(*key)
                    .is_some_and(|value| values.contains(&value.as_str()))
            })
        });
        by_image || by_label
    }

    /// Returns the pod spec field at `key`.
    pub fn pod_field(&self, key: &str) -> Option<&'a Node> {
        self.pod_spec.and_then(|spec| spec.get(key))
    }
}

impl<'a> Container<'a> {
    pub fn image(&self) -> Option<&'a str> {
        self.node.get("image").and_then(Node::as_text)
    }

    /// Returns the container's `securityContext` field at `key`.
    pub fn security_field(&self, key: &str) -> Option<&'a Node> {
        self.node.path(&["securityContext", key])
    }
}
