//! NetworkPolicies and the label selectors that pick their pods.

use crate::objects::{Labels, Object};
use crate::yaml::{Node, Resolved, Value};

/// A NetworkPolicy that isolates the ingress of the pods it selects.
pub struct IngressPolicy<'a> {
    namespace: Option<&'a str>,
    /// `spec.podSelector`. A missing selector is the empty one, which selects every pod.
    selector: Option<&'a Node>,
}

impl<'a> IngressPolicy<'a> {
    /// Returns the policy when `object` is a NetworkPolicy that applies to ingress:
    /// `spec.policyTypes` contains `Ingress`, or is absent (Kubernetes then always
    /// includes `Ingress`). A policy for egress alone leaves ingress open, so it is
    /// `None`.
    pub fn from_object(object: &Object<'a>) -> Option<IngressPolicy<'a>> {
        if object.kind != "NetworkPolicy" {
            return None;
        }
        let spec = object.node.get("spec");
        let policy_types = spec.and_then(|spec| spec.get("policyTypes"));
        let applies_to_ingress = match policy_types {
            None => true,
            Some(types) => types
                .items()
                .iter()
                .any(|policy_type| policy_type.as_text() == Some("Ingress")),
        };
        applies_to_ingress.then(|| IngressPolicy {
            namespace: object.namespace,
            selector: spec.and_then(|spec| spec.get("podSelector")),
        })
    }

    /// Returns whether the policy selects pods with `labels` in `namespace`.
    pub fn selects(&self, namespace: Option<&str>, labels: &Labels) -> bool {
        self.namespace == namespace
            && self
                .selector
                .is_none_or(|selector| selector_matches(selector, labels))
    }
}

/// Evaluates a LabelSelector: every `matchLabels` entry and every `matchExpressions`
/// requirement must hold, so the empty selector matches everything. A malformed
/// requirement, which the API server would reject, matches nothing.
pub fn selector_matches(selector: &Node, labels: &Labels) -> bool {
    match &selector.value {
        Value::Mapping(_) => {}
        // A null selector decodes to the empty one.
        Value::Scalar(scalar) if scalar.resolved == Resolved::Null => return true,
        _ => return false,
    }
    let match_labels = selector
        .get("matchLabels")
        .map(Node::entries)
        .unwrap_or_default();
    let labels_hold = match_labels.iter().all(|(key, value)| {
        value
            .as_text()
            .is_some_and(|value| labels.get(key).is_some_and(|label| label == value))
    });
    labels_hold
        && selector
            .items_at("matchExpressions")
            .iter()
            .all(|requirement| requirement_holds(requirement, labels))
}

fn requirement_holds(requirement: &Node, labels: &Labels) -> bool {
    let Some(key) = requirement.get("key").and_then(Node::as_text) else {
        return false;
    };
    let values: Vec<&str> = requirement
        .items_at("values")
        .iter()
        .filter_map(|value| value.as_text())
        .collect();
    let label = labels.get(key).map(String::as_str);
    match requirement.get("operator").and_then(Node::as_text) {
        Some("In") => !values.is_empty() && label.is_some_and(|label| values.contains(&label)),
        Some("NotIn") => !values.is_empty() && label.is_none_or(|label| !values.contains(&label)),
        Some("Exists") => values.is_empty() && label.is_some(),
        Some("DoesNotExist") => values.is_empty() && label.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn matches(selector: &str, pod: &Labels) -> bool {
        let documents = parse_stream(selector).unwrap();
        selector_matches(&documents[0].root, pod)
    }

    #[test]
    fn empty_selector_matches_all() {
        assert!(matches("{}", &labels(&[])));
        assert!(matches("{}", &labels(&[("app", "x")])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let pod = labels(&[("app", "ravelin"), ("tier", "db")]);
        assert!(matches("matchLabels: {app: ravelin}", &pod));
        assert!(matches("matchLabels: {app: ravelin, tier: db}", &pod));
        assert!(!matches("matchLabels: {app: ravelin, tier: web}", &pod));
        assert!(!matches("matchLabels: {other: x}", &pod));
    }

    #[test]
    fn match_expression_operators() {
        let pod = labels(&[("app", "ravelin")]);
        let cases = [
            ("{key: app, operator: In, values: [ravelin, chroma]}", true),
            ("{key: app, operator: In, values: [chroma]}", false),
            ("{key: app, operator: In, values: []}", false),
            ("{key: app, operator: NotIn, values: [chroma]}", true),
            ("{key: app, operator: NotIn, values: [ravelin]}", false),
            ("{key: tier, operator: NotIn, values: [web]}", true),
            ("{key: app, operator: Exists}", true),
            ("{key: tier, operator: Exists}", false),
            ("{key: tier, operator: DoesNotExist}", true),
            ("{key: app, operator: DoesNotExist}", false),
            ("{key: app, operator: Exists, values: [x]}", false),
            ("{key: app, operator: Gt, values: ['1']}", false),
        ];
        for (expression, expected) in cases {
            let selector = format!("matchExpressions: [{expression}]");
            assert_eq!(matches(&selector, &pod), expected, "{expression}");
        }
    }

    #[test]
    fn labels_and_expressions_combine() {
        let pod = labels(&[("app", "ravelin"), ("tier", "db")]);
        let selector = "matchLabels: {app: ravelin}\nmatchExpressions: [{key: tier, operator: In, values: [web]}]\n";
        assert!(!matches(selector, &pod));
    }
}
