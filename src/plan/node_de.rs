//! A serde `Deserializer` over a marked YAML node tree that keeps track of where it is: every error
//! carries the field path (`steps[3].uninstall.product`) and the line and column of the innermost
//! node it concerns. It only reads the tree; it knows nothing about plans.

use std::fmt;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{Node, Span};
use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

/// A line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// Where a node starts as a reader sees it: a block mapping at its first key (the parser
    /// marks it at the first `:`), anything else at its own start.
    pub fn of_node(node: &Node) -> Position {
        match node {
            Node::Mapping(m) => match m.keys().next() {
                Some(first) => Position::of(first.span()),
                None => Position::of(m.span()),
            },
            _ => Position::of(node.span()),
        }
    }

    pub fn of(span: &Span) -> Position {
        span.start()
            .map(|m| Position {
                line: m.line(),
                column: m.column(),
            })
            .unwrap_or_default()
    }
}

/// A deserialization error with the path and position it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    pub message: String,
    /// `None` until the error leaves the node it arose in; then the innermost location.
    pub location: Option<(String, Position)>,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError {
            message: msg.to_string(),
            location: None,
        }
    }

    // serde's own words ("unknown field `verfy`, expected one of ..."), or, when one name is
    // near enough to be what was meant, just that name.
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        match super::suggest::did_you_mean(field, expected) {
            Some(hint) => de::Error::custom(format!("unknown field `{field}`; {hint}")),
            None => de::Error::custom(format!(
                "unknown field `{field}`, expected {}",
                serde_expected(expected)
            )),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        match super::suggest::did_you_mean(variant, expected) {
            Some(hint) => de::Error::custom(format!("unknown variant `{variant}`; {hint}")),
            None => de::Error::custom(format!(
                "unknown variant `{variant}`, expected {}",
                serde_expected(expected)
            )),
        }
    }
}

/// A list of names as serde's own messages spell it.
fn serde_expected(names: &[&str]) -> String {
    match names {
        [] => "nothing".to_string(),
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => format!(
            "one of {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl NodeError {
    fn locate(self, path: &str, span: &Span) -> Self {
        self.locate_at(path, Position::of(span))
    }

    fn locate_node(self, path: &str, node: &Node) -> Self {
        self.locate_at(path, Position::of_node(node))
    }

    fn locate_at(mut self, path: &str, pos: Position) -> Self {
        if self.location.is_none() {
            self.location = Some((path.to_string(), pos));
        }
        self
    }
}

/// Deserialize `T` from `node`, whose field path is `path` (empty for the document root).
pub fn from_node<'de, T: de::Deserialize<'de>>(
    node: &'de Node,
    path: &str,
) -> Result<T, NodeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_string(),
    })
    .map_err(|e| e.locate_node(path, node))
}

/// Joins a field path and a key: `a.b` + `c` = `a.b.c`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a field path and a sequence index: `steps` + 3 = `steps[3]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

struct NodeDe<'de> {
    node: &'de Node,
    path: String,
}

/// Whether a plain scalar is YAML's null (`~`, `null`, or nothing at all).
pub fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

fn scalar_any<'de, V: Visitor<'de>>(
    s: &'de MarkedScalarNode,
    visitor: V,
) -> Result<V::Value, NodeError> {
    if !s.may_coerce() {
        return visitor.visit_borrowed_str(s.as_str());
    }
    if is_null(s) {
        return visitor.visit_unit();
    }
    if let Some(b) = s.as_bool() {
        return visitor.visit_bool(b);
    }
    let text = s.as_str();
    if let Ok(n) = text.parse::<u64>() {
        return visitor.visit_u64(n);
    }
    if let Ok(n) = text.parse::<i64>() {
        return visitor.visit_i64(n);
    }
    if text.contains(['.', 'e', 'E'])
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '-')
    {
        if let Ok(n) = text.parse::<f64>() {
            return visitor.visit_f64(n);
        }
    }
    visitor.visit_borrowed_str(text)
}

macro_rules! integer {
    ($meth:ident, $visit:ident, $ty:ty) => {
        fn $meth<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
            match self.node {
                Node::Scalar(s) if s.may_coerce() => match s.as_str().parse::<$ty>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => Err(de::Error::invalid_type(
                        de::Unexpected::Str(s.as_str()),
                        &visitor,
                    )),
                },
                _ => self.deserialize_any(visitor),
            }
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.node {
            Node::Scalar(s) => scalar_any(s, visitor),
            Node::Mapping(m) => visitor.visit_map(MapDe::new(m, self.path)),
            Node::Sequence(s) => visitor.visit_seq(SeqDe::new(s, self.path)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.node {
            Node::Scalar(s) => match s.as_bool() {
                Some(b) => visitor.visit_bool(b),
                None => Err(de::Error::invalid_type(
                    de::Unexpected::Str(s.as_str()),
                    &visitor,
                )),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    integer!(deserialize_u8, visit_u8, u8);
    integer!(deserialize_u16, visit_u16, u16);
    integer!(deserialize_u32, visit_u32, u32);
    integer!(deserialize_u64, visit_u64, u64);
    integer!(deserialize_i8, visit_i8, i8);
    integer!(deserialize_i16, visit_i16, i16);
    integer!(deserialize_i32, visit_i32, i32);
    integer!(deserialize_i64, visit_i64, i64);
    integer!(deserialize_f32, visit_f32, f32);
    integer!(deserialize_f64, visit_f64, f64);

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.node {
            // Any scalar can be text: `name: 2003` is the string "2003".
            Node::Scalar(s) if !is_null(s) => visitor.visit_borrowed_str(s.as_str()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.node {
            Node::Scalar(s) if is_null(s) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.node {
            // `after:` with nothing after it is an empty list.
            Node::Scalar(s) if is_null(s) => visitor.visit_seq(SeqDe::empty(self.path)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.node {
            Node::Scalar(s) if is_null(s) => visitor.visit_map(MapDe::empty(self.path)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        match self.node {
            Node::Scalar(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Node::Mapping(m) if m.len() == 1 => {
                // Invariant: a mapping of length 1 has a first entry.
                let (key, value) = m.iter().next().expect("mapping of length 1");
                visitor.visit_enum(EnumDe {
                    key,
                    value,
                    path: self.path,
                })
            }
            Node::Mapping(m) => Err(de::Error::custom(format!(
                "expected exactly one of {}, found {}",
                one_of(variants),
                if m.is_empty() {
                    "none".to_string()
                } else {
                    m.keys()
                        .map(|k| format!("`{}`", k.as_str()))
                        .collect::<Vec<_>>()
                        .join(" and ")
                }
            ))),
            Node::Sequence(_) => Err(de::Error::custom(format!(
                "expected one of {}, found a list",
                one_of(variants)
            ))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit_struct newtype_struct tuple tuple_struct identifier
    }
}

/// `` `a`, `b` or `c` ``
pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => "nothing".to_string(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

struct MapDe<'de> {
    entries: Vec<(&'de MarkedScalarNode, &'de Node)>,
    next: usize,
    path: String,
}

impl<'de> MapDe<'de> {
    fn new(m: &'de MarkedMappingNode, path: String) -> Self {
        MapDe {
            entries: m.iter().collect(),
            next: 0,
            path,
        }
    }
    fn empty(path: String) -> Self {
        MapDe {
            entries: Vec::new(),
            next: 0,
            path,
        }
    }
}

impl<'de> MapAccess<'de> for MapDe<'de> {
    type Error = NodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        let key_path = join(&self.path, key.as_str());
        seed.deserialize(key.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: NodeError| e.locate(&key_path, key.span()))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, NodeError> {
        let (key, value) = self
            .entries
            .get(self.next)
            .ok_or_else(|| <NodeError as de::Error>::custom("value requested before key"))?;
        self.next += 1;
        let path = join(&self.path, key.as_str());
        seed.deserialize(NodeDe {
            node: value,
            path: path.clone(),
        })
        .map_err(|e| e.locate_node(&path, value))
    }
}

struct SeqDe<'de> {
    items: &'de [Node],
    next: usize,
    path: String,
}

impl<'de> SeqDe<'de> {
    fn new(s: &'de MarkedSequenceNode, path: String) -> Self {
        SeqDe {
            items: s.as_slice(),
            next: 0,
            path,
        }
    }
    fn empty(path: String) -> Self {
        SeqDe {
            items: &[],
            next: 0,
            path,
        }
    }
}

impl<'de> SeqAccess<'de> for SeqDe<'de> {
    type Error = NodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        let Some(item) = self.items.get(self.next) else {
            return Ok(None);
        };
        let path = index(&self.path, self.next);
        self.next += 1;
        seed.deserialize(NodeDe {
            node: item,
            path: path.clone(),
        })
        .map(Some)
        .map_err(|e| e.locate_node(&path, item))
    }
}

struct EnumDe<'de> {
    key: &'de MarkedScalarNode,
    value: &'de Node,
    path: String,
}

impl<'de> EnumAccess<'de> for EnumDe<'de> {
    type Error = NodeError;
    type Variant = NodeDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'de>), NodeError> {
        let path = join(&self.path, self.key.as_str());
        let tag = seed
            .deserialize(self.key.as_str().into_deserializer())
            .map_err(|e: NodeError| e.locate(&path, self.key.span()))?;
        Ok((
            tag,
            NodeDe {
                node: self.value,
                path,
            },
        ))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'de> {
    type Error = NodeError;

    fn unit_variant(self) -> Result<(), NodeError> {
        match self.node {
            Node::Scalar(s) if is_null(s) => Ok(()),
            _ => Err(
                <NodeError as de::Error>::custom("expected no value for this choice")
                    .locate_node(&self.path, self.node),
            ),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, NodeError> {
        let (path, pos) = (self.path.clone(), Position::of_node(self.node));
        seed.deserialize(self).map_err(|e| e.locate_at(&path, pos))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        let (path, pos) = (self.path.clone(), Position::of_node(self.node));
        de::Deserializer::deserialize_seq(self, visitor).map_err(|e| e.locate_at(&path, pos))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        let (path, pos) = (self.path.clone(), Position::of_node(self.node));
        de::Deserializer::deserialize_map(self, visitor).map_err(|e| e.locate_at(&path, pos))
    }
}

/// Deserializes the enum `T` from one mapping entry `key: value` taken out of a larger mapping
/// (a step's kind key among `id`, `after`, ...). `parent` is the mapping's field path.
pub fn from_enum_entry<'de, T: de::Deserialize<'de>>(
    key: &'de MarkedScalarNode,
    value: &'de Node,
    parent: &str,
) -> Result<T, NodeError> {
    struct EntryDe<'de>(EnumDe<'de>);
    impl<'de> de::Deserializer<'de> for EntryDe<'de> {
        type Error = NodeError;
        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
            visitor.visit_enum(self.0)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
        }
    }
    let key_path = join(parent, key.as_str());
    T::deserialize(EntryDe(EnumDe {
        key,
        value,
        path: parent.to_string(),
    }))
    .map_err(|e| e.locate(&key_path, key.span()))
}

/// The variant names serde knows for the enum `T` (its YAML tags), asked of serde itself.
pub fn enum_variants<T: de::DeserializeOwned>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    struct Probe;
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(variants))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(variants)) => variants,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn parse(text: &str) -> Node {
        marked_yaml::parse_yaml_with_options(
            0,
            text,
            marked_yaml::LoaderOptions::default().prevent_coercion(true),
        )
        .unwrap()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
        flag: Option<bool>,
    }

    #[test]
    fn a_type_error_deep_in_a_list_names_its_path_and_position() {
        let node = parse("inner:\n  - n: 1\n  - n: many\n");
        let err = from_node::<Outer>(&node, "").unwrap_err();
        assert_eq!(
            err.location,
            Some(("inner[1].n".to_string(), Position { line: 3, column: 8 }))
        );
        assert_eq!(err.message, "invalid type: string \"many\", expected u32");
    }

    #[test]
    fn an_unknown_field_points_at_its_key() {
        let node = parse("inner:\n  - n: 1\n    flg: true\n");
        let err = from_node::<Outer>(&node, "").unwrap_err();
        assert_eq!(
            err.location,
            Some(("inner[0].flg".to_string(), Position { line: 3, column: 5 }))
        );
        assert_eq!(err.message, "unknown field `flg`; did you mean `flag`?");
    }

    #[test]
    fn an_unknown_field_near_no_known_one_lists_them_all() {
        let node = parse("inner:\n  - n: 1\n    colour: red\n");
        let err = from_node::<Outer>(&node, "").unwrap_err();
        assert_eq!(
            err.message,
            "unknown field `colour`, expected `n` or `flag`"
        );
    }

    #[test]
    fn a_quoted_number_is_not_a_number() {
        let node = parse("inner: [{n: '5'}]\n");
        assert!(from_node::<Outer>(&node, "").is_err());
    }
}
