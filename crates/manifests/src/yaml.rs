//! YAML streams into trees of [`Node`]s, read the way Kubernetes reads them.
//!
//! kubectl and the API server decode YAML with sigs.k8s.io/yaml, which is built on
//! go-yaml v2. That parser follows YAML 1.1 for plain scalars: `yes`, `on` and `y` are
//! booleans as well as `true`, integers may be written in hexadecimal, octal or binary
//! and contain underscores, and `<<` merges mappings. This module resolves plain
//! scalars the same way (the table of gopkg.in/yaml.v2 2.4 `resolve.go`), so that a
//! check reads the value the cluster would read. Quoted and block scalars are strings.
//!
//! Three things are stricter than go-yaml, because a checker that reads a manifest
//! differently from the cluster can be fooled:
//! - a key that appears twice in one mapping is an error, since which value wins
//!   depends on the decoder;
//! - mapping keys must be scalars;
//! - a stream is limited in size, nesting depth and node count, where an alias counts
//!   every node it repeats. So a stream of nested aliases (a "billion laughs") is an
//!   error rather than an exhausted memory.

use std::rc::Rc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

/// Maximum size of one YAML stream, in bytes.
pub const MAX_SOURCE_BYTES: usize = 16 << 20;
/// Maximum nesting of sequences and mappings. Kubernetes objects nest about 15 deep.
pub const MAX_DEPTH: usize = 128;
/// Maximum number of nodes in one stream, each alias counting the nodes it repeats.
pub const MAX_NODES: usize = 1_000_000;

/// A YAML value with the line it starts on.
#[derive(Debug)]
pub struct Node {
    /// The 1-based line of the node's first character.
    pub line: usize,
    pub value: Value,
    /// Nodes in this subtree, this one included, each alias counted in full.
    size: usize,
    /// Levels of sequences and mappings below and including this node.
    height: usize,
}

/// The content of a [`Node`].
#[derive(Debug)]
pub enum Value {
    Scalar(Scalar),
    Sequence(Vec<Rc<Node>>),
    /// Entries in source order, merged (`<<`) entries after the explicit ones.
    Mapping(Vec<(String, Rc<Node>)>),
}

/// A scalar's source text and the type a YAML 1.1 reader resolves it to.
#[derive(Debug)]
pub struct Scalar {
    pub text: String,
    pub resolved: Resolved,
}

/// The resolved type of a scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Float,
    String,
}

/// One document of a stream.
#[derive(Debug)]
pub struct Document {
    /// The 1-based position of the document in its stream, empty documents included.
    pub index: usize,
    pub root: Rc<Node>,
}

/// A stream that is not valid YAML, or that passes a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    /// The 1-based line of the error.
    pub line: usize,
    /// The 1-based column of the error.
    pub column: usize,
    pub message: String,
}

impl Node {
    /// Returns the value of `key` when this node is a mapping that contains it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Mapping(entries) => entries
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, node)| node.as_ref()),
            _ => None,
        }
    }

    /// Follows a path of mapping keys from this node.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// Returns the scalar's text, whatever type it resolves to. Kubernetes reads a
    /// plain scalar in a string field as its text, so `app: true` is the label value
    /// `"true"`.
    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(scalar) if scalar.resolved != Resolved::Null => Some(&scalar.text),
            _ => None,
        }
    }

    /// Returns the boolean, or `None` for any other type: a quoted `"true"` is a
    /// string, which the API server rejects in a boolean field.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar(Scalar {
                resolved: Resolved::Bool(value),
                ..
            }) => Some(*value),
            _ => None,
        }
    }

    /// Returns the integer, or `None` for any other type.
    pub fn as_int(&self) -> Option<i64> {
        match &self.value {
            Value::Scalar(Scalar {
                resolved: Resolved::Int(value),
                ..
            }) => Some(*value),
            _ => None,
        }
    }

    /// Returns the items of a sequence, and an empty slice for any other type.
    pub fn items(&self) -> &[Rc<Node>] {
        match &self.value {
            Value::Sequence(items) => items,
            _ => &[],
        }
    }

    /// Returns the items of the sequence at `key`, or an empty slice when this node
    /// has no such sequence.
    pub fn items_at(&self, key: &str) -> &[Rc<Node>] {
        self.get(key).map(Node::items).unwrap_or_default()
    }

    /// Returns the entries of a mapping, and an empty slice for any other type.
    pub fn entries(&self) -> &[(String, Rc<Node>)] {
        match &self.value {
            Value::Mapping(entries) => entries,
            _ => &[],
        }
    }

    pub fn is_mapping(&self) -> bool {
        matches!(self.value, Value::Mapping(_))
    }
}

/// Parses a YAML stream into its documents.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, YamlError> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(YamlError {
            line: 1,
            column: 1,
            message: format!(
                "the file has {} bytes, more than the limit of {MAX_SOURCE_BYTES}",
                text.len()
            ),
        });
    }
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|error| YamlError {
            line: error.marker().line(),
            column: error.marker().col() + 1,
            message: error.info().to_string(),
        })?;
        builder.accept(event, span)?;
    }
    Ok(builder.documents)
}

/// A sequence or mapping whose end event has not arrived yet.
enum Frame {
    Sequence {
        anchor: usize,
        line: usize,
        items: Vec<Rc<Node>>,
    },
    Mapping {
        anchor: usize,
        line: usize,
        entries: Vec<(String, Rc<Node>)>,
        /// The key whose value comes next, if any.
        key: Option<PendingKey>,
        /// Mappings to merge in, from `<<` entries, in the order they appear.
        merges: Vec<Rc<Node>>,
    },
}

enum PendingKey {
    Name(String),
    Merge,
}

/// Builds documents from parser events with an explicit stack, so that deep nesting
/// cannot overflow the call stack.
#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    /// Documents started so far, for [`Document::index`].
    started: usize,
    stack: Vec<Frame>,
    anchors: std::collections::HashMap<usize, Rc<Node>>,
    nodes: usize,
}

impl Builder {
    fn accept(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let line = span.start.line();
        let error = |message: String| YamlError {
            line,
            column: span.start.col() + 1,
            message,
        };
        match event {
            Event::DocumentStart(_) => {
                self.started += 1;
                self.anchors.clear();
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                let resolved = resolve_scalar(&text, style, tag.as_deref());
                let scalar = Value::Scalar(Scalar {
                    text: text.into_owned(),
                    resolved,
                });
                let node = self.new_node(line, scalar, 0, 0).map_err(error)?;
                self.finish(node, anchor, style == ScalarStyle::Plain && tag.is_none())
                    .map_err(error)
            }
            Event::Alias(anchor) => {
                let node = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| error("an alias refers to an unknown anchor".to_string()))?;
                self.count(node.size).map_err(error)?;
                self.finish(node, 0, false).map_err(error)
            }
            Event::SequenceStart(anchor, _) => self
                .push(Frame::Sequence {
                    anchor,
                    line,
                    items: Vec::new(),
                })
                .map_err(error),
            Event::MappingStart(anchor, _) => self
                .push(Frame::Mapping {
                    anchor,
                    line,
                    entries: Vec::new(),
                    key: None,
                    merges: Vec::new(),
                })
                .map_err(error),
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, node) = match self.stack.pop() {
                    Some(Frame::Sequence {
                        anchor,
                        line,
                        items,
                    }) => {
                        let (size, height) = child_totals(items.iter());
                        (
                            anchor,
                            self.new_node(line, Value::Sequence(items), size, height),
                        )
                    }
                    Some(Frame::Mapping {
                        anchor,
                        line,
                        entries,
                        merges,
                        ..
                    }) => {
                        let entries = merge_entries(entries, &merges);
                        let (size, height) = child_totals(entries.iter().map(|(_, node)| node));
                        (
                            anchor,
                            self.new_node(line, Value::Mapping(entries), size, height),
                        )
                    }
                    None => return Err(error("unbalanced end of a collection".to_string())),
                };
                let node = node.map_err(error)?;
                self.finish(node, anchor, false).map_err(error)
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
        }
    }

    fn push(&mut self, frame: Frame) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!(
                "sequences and mappings nest deeper than {MAX_DEPTH} levels"
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn count(&mut self, nodes: usize) -> Result<(), String> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err(format!(
                "the file has more than {MAX_NODES} YAML nodes, counting each alias in full"
            ));
        }
        Ok(())
    }

    /// Creates a node whose children total `children` nodes and are at most
    /// `child_height` levels high. Scalars pass zero for both.
    fn new_node(
        &mut self,
        line: usize,
        value: Value,
        children: usize,
        child_height: usize,
    ) -> Result<Rc<Node>, String> {
        let collection = !matches!(value, Value::Scalar(_));
        let size = if collection { children + 1 } else { 1 };
        let height = if collection { child_height + 1 } else { 0 };
        // A collection's own children were counted as they arrived.
        self.count(1)?;
        Ok(Rc::new(Node {
            line,
            value,
            size,
            height,
        }))
    }

    /// Places a complete node into its parent, or makes it a document's root.
    /// `mergeable` is true for a plain, untagged scalar, which is a merge key if its
    /// text is `<<`.
    fn finish(&mut self, node: Rc<Node>, anchor: usize, mergeable: bool) -> Result<(), String> {
        if self.stack.len() + node.height > MAX_DEPTH {
            return Err(format!(
                "sequences and mappings nest deeper than {MAX_DEPTH} levels"
            ));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, Rc::clone(&node));
        }
        match self.stack.last_mut() {
            None => {
                self.documents.push(Document {
                    index: self.started,
                    root: node,
                });
                Ok(())
            }
            Some(Frame::Sequence { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Mapping {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    let Value::Scalar(scalar) = &node.value else {
                        return Err(
                            "a mapping key is a sequence or mapping; Kubernetes keys are strings"
                                .to_string(),
                        );
                    };
                    if mergeable && scalar.text == "<<" {
                        *key = Some(PendingKey::Merge);
                        return Ok(());
                    }
                    if entries.iter().any(|(name, _)| *name == scalar.text) {
                        return Err(format!(
                            "duplicate key {:?} in one mapping; which value Kubernetes uses depends on the decoder, so remove one",
                            scalar.text
                        ));
                    }
                    *key = Some(PendingKey::Name(scalar.text.clone()));
                    Ok(())
                }
                Some(PendingKey::Name(name)) => {
                    entries.push((name, node));
                    Ok(())
                }
                Some(PendingKey::Merge) => {
                    let sources: Vec<Rc<Node>> = match &node.value {
                        Value::Mapping(_) => vec![node],
                        Value::Sequence(items) if items.iter().all(|item| item.is_mapping()) => {
                            items.clone()
                        }
                        _ => {
                            return Err(
                                "a merge key (<<) needs a mapping or a sequence of mappings"
                                    .to_string(),
                            )
                        }
                    };
                    merges.extend(sources);
                    Ok(())
                }
            },
        }
    }
}

/// Returns the node count and the greatest height of `children`.
fn child_totals<'a>(children: impl Iterator<Item = &'a Rc<Node>>) -> (usize, usize) {
    children.fold((0, 0), |(size, height), child| {
        (size + child.size, height.max(child.height))
    })
}

/// Adds the entries of merged mappings to `entries`. An explicit key wins over a
/// merged one, and an earlier merged mapping wins over a later one, as in the YAML
/// 1.1 merge key type.
fn merge_entries(
    mut entries: Vec<(String, Rc<Node>)>,
    merges: &[Rc<Node>],
) -> Vec<(String, Rc<Node>)> {
    for source in merges {
        for (name, node) in source.entries() {
            if !entries.iter().any(|(existing, _)| existing == name) {
                entries.push((name.clone(), Rc::clone(node)));
            }
        }
    }
    entries
}

/// Resolves a scalar's type: by its core-schema tag if it has one, as a string if it
/// is quoted, a block or has another tag, and by the YAML 1.1 rules if it is plain.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Resolved {
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            return Resolved::String;
        }
        return match tag.suffix.as_str() {
            "bool" => resolve_plain(text)
                .filter(|resolved| matches!(resolved, Resolved::Bool(_)))
                .unwrap_or(Resolved::String),
            "int" => resolve_plain(text)
                .filter(|resolved| matches!(resolved, Resolved::Int(_)))
                .unwrap_or(Resolved::String),
            "null" => Resolved::Null,
            "float" => Resolved::Float,
            _ => Resolved::String,
        };
    }
    if style != ScalarStyle::Plain {
        return Resolved::String;
    }
    resolve_plain(text).unwrap_or(Resolved::String)
}

/// Resolves a plain scalar as gopkg.in/yaml.v2 does, or returns `None` for a string.
fn resolve_plain(text: &str) -> Option<Resolved> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Resolved::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Some(Resolved::Bool(true))
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Some(Resolved::Bool(false))
        }
        _ => {}
    }
    if let Some(value) = parse_int(text) {
        return Some(Resolved::Int(value));
    }
    let float_text = text.replace('_', "");
    let special = [".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"];
    let unsigned = float_text.trim_start_matches(['+', '-']);
    if special.contains(&unsigned)
        || (unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && !unsigned.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
            && float_text.parse::<f64>().is_ok())
    {
        return Some(Resolved::Float);
    }
    None
}

/// Parses an integer as Go's `strconv.ParseInt(text, 0, 64)` after go-yaml removes
/// underscores: an optional sign, then decimal, `0x` hexadecimal, `0o` or leading-zero
/// octal, or `0b` binary.
fn parse_int(text: &str) -> Option<i64> {
    let digits = text.replace('_', "");
    let (negative, unsigned) = match digits.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, digits.strip_prefix('+').unwrap_or(&digits)),
    };
    let (radix, body) = if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (16, hex)
    } else if let Some(binary) = unsigned
        .strip_prefix("0b")
        .or_else(|| unsigned.strip_prefix("0B"))
    {
        (2, binary)
    } else if let Some(octal) = unsigned
        .strip_prefix("0o")
        .or_else(|| unsigned.strip_prefix("0O"))
    {
        (8, octal)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (8, &unsigned[1..])
    } else {
        (10, unsigned)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(body, radix).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Rc<Node> {
        let mut documents = parse_stream(text).unwrap();
        assert_eq!(documents.len(), 1, "{text}");
        documents.remove(0).root
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_1() {
        let cases = [
            ("yes", Resolved::Bool(true)),
            ("On", Resolved::Bool(true)),
            ("y", Resolved::Bool(true)),
            ("off", Resolved::Bool(false)),
            ("FALSE", Resolved::Bool(false)),
            ("~", Resolved::Null),
            ("1_000", Resolved::Int(1000)),
            ("0x3e8", Resolved::Int(1000)),
            ("01750", Resolved::Int(1000)),
            ("0o1750", Resolved::Int(1000)),
            ("0b1111101000", Resolved::Int(1000)),
            ("+1000", Resolved::Int(1000)),
            ("-1", Resolved::Int(-1)),
            ("0", Resolved::Int(0)),
            ("1.5", Resolved::Float),
            ("1e3", Resolved::Float),
            (".inf", Resolved::Float),
            ("08", Resolved::Float),
            ("truthy", Resolved::String),
            ("0x", Resolved::String),
            ("99999999999999999999", Resolved::Float),
            ("1.2.3", Resolved::String),
            ("latest", Resolved::String),
        ];
        for (text, expected) in cases {
            let node = root(&format!("key: {text}\n"));
            let Value::Scalar(scalar) = &node.get("key").unwrap().value else {
                panic!("{text} is not a scalar");
            };
            assert_eq!(scalar.resolved, expected, "{text}");
        }
    }

    #[test]
    fn quoted_and_tagged_scalars_are_strings() {
        let node = root("a: 'true'\nb: \"0\"\nc: !!str yes\nd: !custom 5\ne: !!bool yes\n");
        assert_eq!(node.get("a").unwrap().as_bool(), None);
        assert_eq!(node.get("b").unwrap().as_int(), None);
        assert_eq!(node.get("c").unwrap().as_bool(), None);
        assert_eq!(node.get("d").unwrap().as_int(), None);
        assert_eq!(node.get("e").unwrap().as_bool(), Some(true));
    }

    #[test]
    fn merge_keys_fill_missing_entries() {
        let node = root(
            "base: &base {runAsUser: 0, runAsNonRoot: false}\n\
             other: &other {readOnlyRootFilesystem: true, runAsUser: 7}\n\
             context:\n  <<: [*base, *other]\n  runAsNonRoot: true\n",
        );
        let context = node.get("context").unwrap();
        assert_eq!(context.get("runAsNonRoot").unwrap().as_bool(), Some(true));
        assert_eq!(context.get("runAsUser").unwrap().as_int(), Some(0));
        assert_eq!(
            context.get("readOnlyRootFilesystem").unwrap().as_bool(),
            Some(true)
        );
        assert_eq!(context.entries().len(), 3);
    }

    #[test]
    fn quoted_merge_key_is_an_ordinary_key() {
        let node = root("a:\n  '<<': {b: 1}\n");
        assert!(node.path(&["a", "<<", "b"]).is_some());
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let error = parse_stream("spec:\n  hostNetwork: false\n  hostNetwork: true\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(
            error.message.contains("duplicate key \"hostNetwork\""),
            "{error}"
        );
    }

    #[test]
    fn collection_key_is_an_error() {
        let error = parse_stream("? [a, b]\n: c\n").unwrap_err();
        assert!(error.message.contains("mapping key"), "{error}");
    }

    #[test]
    fn documents_keep_their_positions() {
        let documents = parse_stream("a: 1\n---\n---\nb: 2\n").unwrap();
        let indexes: Vec<usize> = documents.iter().map(|document| document.index).collect();
        assert_eq!(indexes, [1, 2, 3]);
        assert_eq!(documents[2].root.line, 4);
    }

    #[test]
    fn nested_aliases_hit_the_node_limit() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let previous = level - 1;
            text.push_str(&format!(
                "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
            ));
        }
        let error = parse_stream(&text).unwrap_err();
        assert!(
            error.message.contains("more than 1000000 YAML nodes"),
            "{error}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let text = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let error = parse_stream(&text).unwrap_err();
        assert!(error.message.contains("nest deeper"), "{error}");
    }

    #[test]
    fn alias_cannot_exceed_the_depth_limit() {
        let inner = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let outer = format!("{}*a{}", "[".repeat(60), "]".repeat(60));
        let text = format!("a: &a {inner}\nb: {outer}\n");
        let error = parse_stream(&text).unwrap_err();
        assert!(error.message.contains("nest deeper"), "{error}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let error = parse_stream("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(error.line >= 1);
        assert!(!error.message.is_empty());
    }
}
