//! A space of named choices, read from a JSON or TOML file.
//!
//! The file maps every choice to its options; the choices become genes in the order the file
//! lists them. In JSON:
//!
//! ```json
//! {"depth": [2, 3, 4], "op": ["conv3x3", "conv5x5"]}
//! ```
//!
//! and the same space in TOML:
//!
//! ```toml
//! depth = [2, 3, 4]
//! op = ["conv3x3", "conv5x5"]
//! ```
//!
//! Options may be strings, numbers or booleans; each is kept as its text (`3`, `0.5`, `true`), so
//! a strategy never sees a number, only a name. The key of an architecture names every choice in
//! gene order: `depth=3,op=conv5x5`.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::multi::space::{Arch, Gene, Space};
use crate::{NasError, Result};

/// A space whose genes are independent named choices, every combination valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChoiceSpace {
    genes: Vec<Gene>,
}

impl ChoiceSpace {
    /// A space with one gene per `(name, options)` entry, in the given order.
    ///
    /// # Errors
    /// [`NasError::Config`] on field `choices` when there are no choices, a name repeats, a list
    /// of options is empty or repeats an option, or a name or option is empty, has surrounding
    /// spaces, or contains `,` or `=` (the separators of the key form).
    pub fn new(choices: Vec<(String, Vec<String>)>) -> Result<Self> {
        Self::build(choices).map_err(|message| NasError::config("choices", message))
    }

    /// Reads a choices file; the extension (`.json` or `.toml`) says its format.
    ///
    /// # Errors
    /// [`NasError::Format`] naming the file for an unknown extension, a syntax error, or any of
    /// the problems of [`ChoiceSpace::new`] (then naming the choice at fault), or when an option
    /// is a list, a table or null; [`NasError::Io`] when the file cannot be read.
    pub fn load(path: &Path) -> Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse: fn(&str, &Path) -> Result<Self> = match extension.as_deref() {
            Some("json") => Self::from_json_str,
            Some("toml") => Self::from_toml_str,
            other => {
                let found = other.map_or("no extension".to_string(), |e| format!("`.{e}`"));
                return Err(NasError::format(
                    path,
                    format!(
                        "unknown extension ({found}); a choices file is JSON (`.json`) or \
                         TOML (`.toml`)"
                    ),
                ));
            }
        };
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        parse(&text, path)
    }

    /// Reads the JSON form; `source` names the file in errors.
    ///
    /// # Errors
    /// As [`ChoiceSpace::load`].
    pub fn from_json_str(text: &str, source: &Path) -> Result<Self> {
        let node: Node = serde_json::from_str(text)
            .map_err(|e| NasError::format(source, format!("not valid JSON: {e}")))?;
        Self::from_node(node, source)
    }

    /// Reads the TOML form; `source` names the file in errors.
    ///
    /// # Errors
    /// As [`ChoiceSpace::load`].
    pub fn from_toml_str(text: &str, source: &Path) -> Result<Self> {
        let node: Node = toml::from_str(text).map_err(|e| {
            NasError::format(
                source,
                format!("not valid TOML: {}", e.to_string().trim_end()),
            )
        })?;
        Self::from_node(node, source)
    }

    /// The choices of a parsed file, checked; errors name `source` and the choice.
    fn from_node(node: Node, source: &Path) -> Result<Self> {
        let fail = |message: String| NasError::format(source, message);
        let Node::Table(entries) = node else {
            return Err(fail(format!(
                "expected a table mapping each choice to its list of options, found {}",
                node.kind()
            )));
        };
        let mut choices = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let Node::List(items) = value else {
                return Err(fail(format!(
                    "choice `{name}`: expected a list of options, found {}",
                    value.kind()
                )));
            };
            let mut options = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Node::Text(text) => options.push(text),
                    other => {
                        return Err(fail(format!(
                            "choice `{name}`, option {i}: expected a string, a number or a \
                             boolean, found {}",
                            other.kind()
                        )));
                    }
                }
            }
            choices.push((name, options));
        }
        Self::build(choices).map_err(fail)
    }

    /// The space, or what is wrong with `choices`.
    fn build(choices: Vec<(String, Vec<String>)>) -> std::result::Result<Self, String> {
        if choices.is_empty() {
            return Err("no choices; list at least one, e.g. `depth = [2, 3]`".into());
        }
        let mut genes: Vec<Gene> = Vec::with_capacity(choices.len());
        for (name, options) in choices {
            check_text(&name).map_err(|why| format!("choice name `{name}` {why}"))?;
            if genes.iter().any(|g| g.name == name) {
                return Err(format!("choice `{name}` appears twice"));
            }
            if options.is_empty() {
                return Err(format!(
                    "choice `{name}`: the list of options is empty; give at least one"
                ));
            }
            for (i, option) in options.iter().enumerate() {
                check_text(option)
                    .map_err(|why| format!("choice `{name}`, option {i}: `{option}` {why}"))?;
                if let Some(first) = options[..i].iter().position(|o| o == option) {
                    return Err(format!(
                        "choice `{name}`: option `{option}` appears twice (options {first} and \
                         {i})"
                    ));
                }
            }
            genes.push(Gene { name, options });
        }
        Ok(ChoiceSpace { genes })
    }
}

/// Whether `text` can be a choice name or option in the key form `name=option,...`.
fn check_text(text: &str) -> std::result::Result<(), &'static str> {
    if text.is_empty() {
        Err("is empty")
    } else if text.trim() != text {
        Err("has leading or trailing spaces")
    } else if text.contains(',') || text.contains('=') {
        Err("contains `,` or `=`, which separate the parts of a key (`name=option,...`)")
    } else {
        Ok(())
    }
}

impl Space for ChoiceSpace {
    fn kind(&self) -> &str {
        "choices"
    }

    fn genes(&self) -> &[Gene] {
        &self.genes
    }

    fn key(&self, arch: &[usize]) -> String {
        self.genes
            .iter()
            .zip(arch)
            .map(|(g, &v)| format!("{}={}", g.name, g.options[v]))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads `name=option,...`; the choices may come in any order but each exactly once.
    fn parse(&self, text: &str) -> Result<Arch> {
        let fail =
            |message: String| NasError::config("architecture", format!("`{text}`: {message}"));
        let names = || {
            self.genes
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut values: Vec<Option<usize>> = vec![None; self.genes.len()];
        for (i, part) in text.trim().split(',').enumerate() {
            let Some((name, option)) = part.split_once('=') else {
                return Err(fail(format!(
                    "part {} (`{}`) is not `name=option`",
                    i + 1,
                    part.trim()
                )));
            };
            let (name, option) = (name.trim(), option.trim());
            let Some(gene) = self.genes.iter().position(|g| g.name == name) else {
                return Err(fail(format!(
                    "unknown choice `{name}` (choices: {})",
                    names()
                )));
            };
            if values[gene].is_some() {
                return Err(fail(format!("choice `{name}` is given twice")));
            }
            let options = &self.genes[gene].options;
            let Some(value) = options.iter().position(|o| o == option) else {
                return Err(fail(format!(
                    "choice `{name}` has no option `{option}` (options: {})",
                    options.join(", ")
                )));
            };
            values[gene] = Some(value);
        }
        let missing: Vec<&str> = self
            .genes
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(g, _)| g.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(fail(format!("missing choice(s) {}", missing.join(", "))));
        }
        Ok(values.into_iter().flatten().collect())
    }
}

/// A value of a choices file as read, tables in document order (a map type would sort them).
enum Node {
    /// A string, number or boolean, as text.
    Text(String),
    /// JSON `null`.
    Null,
    List(Vec<Node>),
    Table(Vec<(String, Node)>),
}

impl Node {
    /// What the value is, for error messages.
    fn kind(&self) -> String {
        match self {
            Node::Text(text) => format!("the single value `{text}`"),
            Node::Null => "null".into(),
            Node::List(_) => "a list".into(),
            Node::Table(_) => "a table".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean, list or table")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Node, E> {
        // Debug keeps the decimal point (`1.0`, not `1`), so a float option never collides with
        // an integer one and reads the same from JSON and TOML.
        Ok(Node::Text(format!("{v:?}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Node, E> {
        Ok(Node::Text(v))
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> std::result::Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Node>()? {
            entries.push(entry);
        }
        Ok(Node::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ChoiceSpace {
        ChoiceSpace::new(vec![
            ("depth".into(), vec!["2".into(), "3".into(), "4".into()]),
            ("op".into(), vec!["conv3x3".into(), "conv5x5".into()]),
        ])
        .unwrap()
    }

    #[test]
    fn key_round_trip_and_any_order() {
        let s = space();
        assert_eq!(s.key(&[1, 1]), "depth=3,op=conv5x5");
        assert_eq!(s.parse("depth=3,op=conv5x5").unwrap(), vec![1, 1]);
        assert_eq!(s.parse(" op = conv3x3 , depth=4 ").unwrap(), vec![2, 0]);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let s = space();
        let err = |t: &str| s.parse(t).unwrap_err().to_string();
        assert!(err("depth=3,width=8").contains("unknown choice `width`"));
        assert!(err("depth=5,op=conv3x3").contains("choice `depth` has no option `5`"));
        assert!(err("depth=3").contains("missing choice(s) op"));
        assert!(err("depth=3,depth=2,op=conv3x3").contains("`depth` is given twice"));
        assert!(err("depth3,op=conv3x3").contains("part 1 (`depth3`) is not `name=option`"));
    }

    #[test]
    fn json_keeps_file_order_and_number_text() {
        let s = ChoiceSpace::from_json_str(
            r#"{"z": [1, 0.5, 2.0, true], "a": ["x"]}"#,
            Path::new("c.json"),
        )
        .unwrap();
        assert_eq!(s.genes()[0].name, "z");
        assert_eq!(s.genes()[0].options, ["1", "0.5", "2.0", "true"]);
        assert_eq!(s.genes()[1].name, "a");
    }
}
