//! Kubernetes objects in parsed documents, and their labels.

use std::collections::BTreeMap;

use crate::yaml::{Document, Node};

/// Label values by key.
pub type Labels = BTreeMap<String, String>;

/// A Kubernetes object: a mapping with `apiVersion` and `kind`.
#[derive(Debug)]
pub struct Object<'a> {
    /// The index of the source in the checked set.
    pub source: usize,
    /// The 1-based document index in the source.
    pub document: usize,
    /// The 1-based line the object starts on.
    pub line: usize,
    pub kind: &'a str,
    /// `metadata.name`, else `metadata.generateName` followed by `*`, else `(unnamed)`.
    pub name: String,
    /// `metadata.namespace`. An object without one goes to the namespace it is
    /// applied to, so it shares a namespace only with other objects without one.
    pub namespace: Option<&'a str>,
    pub node: &'a Node,
}

/// Collects the objects of a source's documents. The items of a list object (`kind:
/// List`, or any kind ending in `List` with an `items` sequence, as `kubectl get -o
/// yaml` prints) are objects too. Documents that are not objects (empty, scalars,
/// mappings without `apiVersion` and `kind`) are skipped.
pub fn collect_objects<'a>(
    source: usize,
    documents: &'a [Document],
    objects: &mut Vec<Object<'a>>,
) {
    for document in documents {
        let root = document.root.as_ref();
        let Some(kind) = object_kind(root) else {
            continue;
        };
        if kind.ends_with("List") && root.get("items").is_some() {
            for item in root.items_at("items") {
                if let Some(item_kind) = object_kind(item) {
                    objects.push(new_object(source, document.index, item_kind, item));
                }
            }
        } else {
            objects.push(new_object(source, document.index, kind, root));
        }
    }
}

fn object_kind(node: &Node) -> Option<&str> {
    node.get("apiVersion")?.as_text()?;
    node.get("kind")?.as_text()
}

fn new_object<'a>(source: usize, document: usize, kind: &'a str, node: &'a Node) -> Object<'a> {
    let metadata = node.get("metadata");
    let text = |key: &str| metadata.and_then(|metadata| metadata.get(key)?.as_text());
    let name = match (text("name"), text("generateName")) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => "(unnamed)".to_string(),
    };
    Object {
        source,
        document,
        line: node.line,
        kind,
        name,
        namespace: text("namespace"),
        node,
    }
}

/// Reads a `labels` mapping. A null value is the empty string, as Kubernetes stores it.
pub fn labels(node: Option<&Node>) -> Labels {
    node.map(Node::entries)
        .unwrap_or_default()
        .iter()
        .map(|(key, value)| (key.clone(), value.as_text().unwrap_or_default().to_string()))
        .collect()
}
