//! The JSON form of a genotype, through serde:
//! `{"normal": [["sep_conv_3x3", 0], ...], "normal_concat": [2, 3, 4, 5], "reduce": [...],
//! "reduce_concat": [2, 3, 4, 5]}`.
//!
//! Deserialization is written by hand so that every error names the field path it is about
//! (`reduce[3][0]`, `normal_concat[1]`) while the format (`serde_json`) adds the line and column, and
//! so that a deserialized genotype is always a valid one.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::genotype::{CellGenotype, GeneEdge, Genotype};
use super::ops::{DartsOp, OpVisitor};

/// The field names, in the order DARTS declares them.
const FIELDS: [&str; 4] = ["normal", "normal_concat", "reduce", "reduce_concat"];

impl Serialize for Genotype {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Genotype", 4)?;
        s.serialize_field("normal", &self.normal.edges)?;
        s.serialize_field("normal_concat", &self.normal.concat)?;
        s.serialize_field("reduce", &self.reduce.edges)?;
        s.serialize_field("reduce_concat", &self.reduce.concat)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Genotype {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("Genotype", &FIELDS, GenotypeVisitor)
    }
}

/// Reads the top-level object, then validates the assembled genotype.
struct GenotypeVisitor;

impl<'de> Visitor<'de> for GenotypeVisitor {
    type Value = Genotype;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a genotype object with the fields {}", FIELDS.join(", "))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Genotype, A::Error> {
        let mut edges: [Option<Vec<GeneEdge>>; 2] = [None, None];
        let mut concats: [Option<Vec<usize>>; 2] = [None, None];
        while let Some(key) = map.next_key::<String>()? {
            // Cell 0 is the normal cell, cell 1 the reduction cell.
            let (cell, is_concat) = match key.as_str() {
                "normal" => (0, false),
                "normal_concat" => (0, true),
                "reduce" => (1, false),
                "reduce_concat" => (1, true),
                _ => {
                    return Err(de::Error::custom(format!(
                        "unknown field `{key}` (expected one of {})",
                        FIELDS.join(", ")
                    )));
                }
            };
            let already = if is_concat {
                concats[cell].is_some()
            } else {
                edges[cell].is_some()
            };
            if already {
                return Err(de::Error::custom(format!("field {key} is given twice")));
            }
            if is_concat {
                concats[cell] = Some(map.next_value_seed(ConcatSeed {
                    field: FIELDS[2 * cell + 1],
                })?);
            } else {
                edges[cell] = Some(map.next_value_seed(EdgesSeed {
                    field: FIELDS[2 * cell],
                })?);
            }
        }
        let [normal, reduce] = edges;
        let [normal_concat, reduce_concat] = concats;
        let missing = |name: &str| de::Error::custom(format!("missing field {name}"));
        let genotype = Genotype {
            normal: CellGenotype {
                edges: normal.ok_or_else(|| missing("normal"))?,
                concat: normal_concat.ok_or_else(|| missing("normal_concat"))?,
            },
            reduce: CellGenotype {
                edges: reduce.ok_or_else(|| missing("reduce"))?,
                concat: reduce_concat.ok_or_else(|| missing("reduce_concat"))?,
            },
        };
        genotype
            .check()
            .map_err(|p| de::Error::custom(p.describe()))?;
        Ok(genotype)
    }
}

/// Reads the edge list of the field `field`.
struct EdgesSeed {
    field: &'static str,
}

impl<'de> DeserializeSeed<'de> for EdgesSeed {
    type Value = Vec<GeneEdge>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EdgesSeed {
    type Value = Vec<GeneEdge>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of [operation, input] pairs at {}", self.field)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut edges = Vec::new();
        loop {
            let path = format!("{}[{}]", self.field, edges.len());
            match seq.next_element_seed(EdgeSeed { path: &path })? {
                Some(edge) => edges.push(edge),
                None => return Ok(edges),
            }
        }
    }
}

/// Reads one `[operation, input]` pair found at `path`.
struct EdgeSeed<'a> {
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for EdgeSeed<'_> {
    type Value = GeneEdge;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_tuple(2, self)
    }
}

impl<'de> Visitor<'de> for EdgeSeed<'_> {
    type Value = GeneEdge;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an [operation, input] pair at {}", self.path)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let op_path = format!("{}[0]", self.path);
        let op = seq
            .next_element_seed(OpSeed { path: &op_path })?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let input_path = format!("{}[1]", self.path);
        let input = seq
            .next_element_seed(IndexSeed { path: &input_path })?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!(
                "{}: an edge is an [operation, input] pair, found more than two elements",
                self.path
            )));
        }
        Ok(GeneEdge { op, input })
    }
}

/// Reads an operation name found at `path`.
struct OpSeed<'a> {
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for OpSeed<'_> {
    type Value = DartsOp;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(OpVisitor {
            path: Some(self.path),
        })
    }
}

/// Reads the concat list of the field `field`.
struct ConcatSeed {
    field: &'static str,
}

impl<'de> DeserializeSeed<'de> for ConcatSeed {
    type Value = Vec<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ConcatSeed {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of state indices at {}", self.field)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut states = Vec::new();
        loop {
            let path = format!("{}[{}]", self.field, states.len());
            match seq.next_element_seed(IndexSeed { path: &path })? {
                Some(state) => states.push(state),
                None => return Ok(states),
            }
        }
    }
}

/// Reads a state index (a non-negative integer) found at `path`.
struct IndexSeed<'a> {
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for IndexSeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_u64(self)
    }
}

impl Visitor<'_> for IndexSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a state index (non-negative integer) at {}", self.path)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use crate::space::published;
    use crate::space::{DartsOp, Genotype};

    /// The error text of parsing `json` as a genotype from the source `g.json`.
    fn error(json: &str) -> String {
        Genotype::from_json_str(json, "g.json")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn pretty_form_matches_serde_and_round_trips() {
        for g in [published::darts_v1(), published::darts_v2()] {
            let text = g.to_json_string();
            let ours: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(ours, serde_json::to_value(&g).unwrap());
            assert_eq!(Genotype::from_json_str(&text, "g.json").unwrap(), g);
        }
    }

    #[test]
    fn edges_are_pairs() {
        let edge: crate::space::GeneEdge = serde_json::from_str("[\"none\", 1]").unwrap();
        assert_eq!((edge.op, edge.input), (DartsOp::None, 1));
        let v = serde_json::to_value(published::darts_v2()).unwrap();
        assert_eq!(v["normal"][7], serde_json::json!(["dil_conv_3x3", 2]));
        assert_eq!(v["reduce_concat"], serde_json::json!([2, 3, 4, 5]));
    }

    #[test]
    fn wrong_type_names_path_and_position() {
        let json = "{\n  \"normal\": [[\"sep_conv_3x3\", 0], [\"sep_conv_3x3\", \"one\"]],\n}";
        let err = error(json);
        assert!(err.starts_with("genotype g.json:2:"), "{err}");
        assert!(err.contains("invalid type: string \"one\""), "{err}");
        assert!(err.contains("expected a state index (non-negative integer) at normal[1][1]"));
    }

    #[test]
    fn unknown_op_names_path() {
        let err = error(r#"{"reduce": [["conv_7x7", 0]]}"#);
        assert!(err.starts_with("genotype g.json:1:"), "{err}");
        assert!(
            err.contains("reduce[0][0]: unknown operation 'conv_7x7' (valid: none,"),
            "{err}"
        );
    }

    #[test]
    fn structural_errors() {
        let err = error(r#"{"normal": [["skip_connect"]]}"#);
        assert!(err.contains("invalid length 1, expected an [operation, input] pair at normal[0]"));
        let err = error(r#"{"normal": [["skip_connect", 0, 1]]}"#);
        assert!(
            err.contains("normal[0]: an edge is an [operation, input] pair"),
            "{err}"
        );
        let err = error(r#"{"normal": [], "normal": []}"#);
        assert!(err.contains("field normal is given twice"), "{err}");
        let err = error(r#"{"normals": []}"#);
        assert!(
            err.contains("unknown field `normals` (expected one of normal,"),
            "{err}"
        );
        let err = error(r#"{"normal_concat": [2, -3]}"#);
        assert!(
            err.contains("integer `-3`, expected a state index"),
            "{err}"
        );
        assert!(err.contains("normal_concat[1]"), "{err}");
        let err = error("[1, 2]");
        assert!(
            err.contains("g.json:1:1: invalid type: sequence, expected a genotype"),
            "{err}"
        );
    }

    #[test]
    fn missing_field_and_validation_errors() {
        let mut g = published::darts_v2();
        let mut v = serde_json::to_value(&g).unwrap();
        v.as_object_mut().unwrap().remove("reduce_concat");
        let err = error(&v.to_string());
        assert!(err.starts_with("genotype g.json:1:"), "{err}");
        assert!(err.contains("missing field reduce_concat"), "{err}");

        g.reduce.edges[5].input = 5;
        let err = error(&g.to_json_string());
        assert!(err.contains("reduce[5]: node 2 takes input 5 but only states 0..=3 exist"));

        g = published::darts_v2();
        g.normal.edges.push(crate::space::GeneEdge {
            op: DartsOp::SkipConnect,
            input: 0,
        });
        let err = error(&g.to_json_string());
        assert!(err.contains("normal: odd number of edges (9)"), "{err}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = error("{\"normal\": [[\"none\", 0]");
        assert!(err.starts_with("genotype g.json:1:"), "{err}");
        assert!(!err.contains(" at line "), "{err}");
    }
}
