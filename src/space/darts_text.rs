//! The DARTS text form: the Python expression users paste from the DARTS `genotypes.py`, e.g.
//! `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...],
//! reduce_concat=range(2, 6))`.
//!
//! A small tokenizer and recursive-descent parser accept an optional `NAME = ` prefix, single or
//! double quotes, any whitespace, `#` comments, trailing commas, arguments by keyword in any order
//! (or by position, in the namedtuple order), and concat as `[...]`, `range(a, b)` or
//! `list(range(a, b))`. Every error is reported as `source:line:column` with what was expected
//! and what was found.

use std::fmt;

use super::genotype::{CellGenotype, CellKind, GeneEdge, Genotype, Spot};
use super::ops::{DartsOp, unknown_op_message};
use crate::error::{NasError, Result};

/// A 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: usize,
    col: usize,
}

/// A token of the DARTS text.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(usize),
    Open(char),
    Close(char),
    Comma,
    Equals,
    End,
}

impl fmt::Display for Tok {
    /// How a found token is named in "expected ..., found ..." messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(name) => write!(f, "name '{name}'"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Int(n) => write!(f, "number {n}"),
            Tok::Open(c) | Tok::Close(c) => write!(f, "'{c}'"),
            Tok::Comma => f.write_str("','"),
            Tok::Equals => f.write_str("'='"),
            Tok::End => f.write_str("end of input"),
        }
    }
}

/// A genotype error at `pos` of `source`.
fn error_at(source: &str, pos: Pos, message: impl Into<String>) -> NasError {
    NasError::genotype(format!("{source}:{}:{}", pos.line, pos.col), message)
}

/// Splits `text` into tokens, each with the position of its first character; always ends with
/// [`Tok::End`].
fn tokenize(text: &str, source: &str) -> Result<Vec<(Tok, Pos)>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut pos = Pos { line: 1, col: 1 };
    // Advances over one character, keeping `pos` on the next one.
    let step = |pos: &mut Pos, c: char| {
        if c == '\n' {
            *pos = Pos {
                line: pos.line + 1,
                col: 1,
            };
        } else {
            pos.col += 1;
        }
    };
    while let Some(c) = chars.next() {
        let start = pos;
        step(&mut pos, c);
        let tok = match c {
            _ if c.is_whitespace() => continue,
            '#' => {
                while let Some(&c) = chars.peek().filter(|&&c| c != '\n') {
                    chars.next();
                    step(&mut pos, c);
                }
                continue;
            }
            '(' | '[' => Tok::Open(c),
            ')' | ']' => Tok::Close(c),
            ',' => Tok::Comma,
            '=' => Tok::Equals,
            '\'' | '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => {
                            step(&mut pos, q);
                            break;
                        }
                        Some(ch) if ch != '\n' => {
                            step(&mut pos, ch);
                            s.push(ch);
                        }
                        _ => {
                            let msg = format!("unterminated string: expected a closing {c}");
                            return Err(error_at(source, start, msg));
                        }
                    }
                }
                Tok::Str(s)
            }
            '0'..='9' => {
                let mut digits = String::from(c);
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    chars.next();
                    step(&mut pos, d);
                    digits.push(d);
                }
                let n = digits.parse().map_err(|_| {
                    error_at(source, start, format!("number {digits} is too large"))
                })?;
                Tok::Int(n)
            }
            _ if c.is_alphabetic() || c == '_' => {
                let mut name = String::from(c);
                while let Some(&d) = chars.peek().filter(|d| d.is_alphanumeric() || **d == '_') {
                    chars.next();
                    step(&mut pos, d);
                    name.push(d);
                }
                Tok::Ident(name)
            }
            _ => {
                let msg = format!(
                    "unexpected character '{c}'; expected a name, string, number or one of ( ) [ ] , ="
                );
                return Err(error_at(source, start, msg));
            }
        };
        tokens.push((tok, start));
    }
    tokens.push((Tok::End, pos));
    Ok(tokens)
}

/// Where the parts of one cell were written, to place validation errors.
#[derive(Clone, Debug, Default)]
struct CellSpans {
    /// The opening `[` of the edge list.
    edges: Option<Pos>,
    /// The input index of each edge.
    inputs: Vec<Pos>,
    /// The start of the concat value.
    concat: Option<Pos>,
    /// Each concat entry (all at the `range` keyword when written as a range).
    concat_items: Vec<Pos>,
}

/// The recursive-descent parser over the token list.
struct Parser<'a> {
    tokens: Vec<(Tok, Pos)>,
    next: usize,
    source: &'a str,
    /// The length of the text, which bounds the number of nodes a genotype in it can have.
    text_len: usize,
}

impl Parser<'_> {
    /// The next token, not consumed.
    fn peek(&self) -> &(Tok, Pos) {
        // `tokenize` always ends with `End`, and `bump` never moves past it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    /// The token after the next one, not consumed.
    fn peek_second(&self) -> &Tok {
        &self.tokens[(self.next + 1).min(self.tokens.len() - 1)].0
    }

    /// Consumes and returns the next token.
    fn bump(&mut self) -> (Tok, Pos) {
        let token = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    /// An "expected ..., found ..." error at the next token.
    fn unexpected<T>(&self, expected: &str) -> Result<T> {
        let (tok, pos) = self.peek();
        Err(error_at(
            self.source,
            *pos,
            format!("expected {expected}, found {tok}"),
        ))
    }

    /// Consumes `tok` or fails saying `expected`.
    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<Pos> {
        if &self.peek().0 == tok {
            Ok(self.bump().1)
        } else {
            self.unexpected(expected)
        }
    }

    /// Consumes a `,` if there is one; returns whether it did.
    fn eat_comma(&mut self) -> bool {
        let comma = self.peek().0 == Tok::Comma;
        if comma {
            self.bump();
        }
        comma
    }

    /// Consumes an integer or fails saying `expected`.
    fn int(&mut self, expected: &str) -> Result<(usize, Pos)> {
        match self.peek().clone() {
            (Tok::Int(n), pos) => {
                self.bump();
                Ok((n, pos))
            }
            _ => self.unexpected(expected),
        }
    }

    /// `[NAME =] Genotype(args)` followed by the end of the text.
    fn genotype(&mut self) -> Result<Genotype> {
        if matches!(self.peek().0, Tok::Ident(ref n) if n != "Genotype")
            && *self.peek_second() == Tok::Equals
        {
            self.bump();
            self.bump();
        }
        self.expect(&Tok::Ident("Genotype".into()), "'Genotype('")?;
        self.expect(&Tok::Open('('), "'(' after Genotype")?;
        let mut edges: [Option<Vec<GeneEdge>>; 2] = [None, None];
        let mut concats: [Option<Vec<usize>>; 2] = [None, None];
        let mut spans = [CellSpans::default(), CellSpans::default()];
        let mut positional = 0;
        let mut keywords = false;
        while self.peek().0 != Tok::Close(')') {
            let field_pos = self.peek().1;
            let field = match (self.peek().0.clone(), self.peek_second()) {
                (Tok::Ident(name), Tok::Equals) => {
                    self.bump();
                    self.bump();
                    keywords = true;
                    FIELDS.iter().position(|f| *f == name).ok_or_else(|| {
                        let msg = format!(
                            "unknown field '{name}' (expected one of {})",
                            FIELDS.join(", ")
                        );
                        error_at(self.source, field_pos, msg)
                    })?
                }
                _ if keywords => {
                    return self.unexpected("a keyword argument such as reduce=[...]");
                }
                _ if positional < FIELDS.len() => {
                    positional += 1;
                    positional - 1
                }
                _ => return self.unexpected("')' after the four fields of Genotype"),
            };
            // Fields alternate edges/concat, normal cell first, as in the DARTS namedtuple.
            let (cell, is_concat) = (field / 2, field % 2 == 1);
            let taken = if is_concat {
                concats[cell].is_some()
            } else {
                edges[cell].is_some()
            };
            if taken {
                let msg = format!("field {} is given twice", FIELDS[field]);
                return Err(error_at(self.source, field_pos, msg));
            }
            if is_concat {
                concats[cell] = Some(self.concat(FIELDS[field], &mut spans[cell])?);
            } else {
                edges[cell] = Some(self.edges(FIELDS[field], &mut spans[cell])?);
            }
            if !self.eat_comma() && self.peek().0 != Tok::Close(')') {
                let expected = format!("',' or ')' after the value of {}", FIELDS[field]);
                return self.unexpected(&expected);
            }
        }
        let close = self.bump().1;
        self.expect(
            &Tok::End,
            "the end of the text after the closing ')' of Genotype",
        )?;

        let missing = |field| error_at(self.source, close, format!("missing field {field}"));
        let [normal, reduce] = edges;
        let [normal_concat, reduce_concat] = concats;
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
        if let Err(p) = genotype.check() {
            let cell = match p.cell {
                CellKind::Normal => &spans[0],
                CellKind::Reduce => &spans[1],
            };
            let pos = match p.problem.spot {
                Spot::Edges => cell.edges,
                Spot::Edge(i) => cell.inputs.get(i).copied(),
                Spot::Concat => cell.concat,
                Spot::ConcatItem(i) => cell.concat_items.get(i).copied(),
            };
            return Err(error_at(self.source, pos.unwrap_or(close), p.describe()));
        }
        Ok(genotype)
    }

    /// `[(op, input), ...]`, the edge list of `field`.
    fn edges(&mut self, field: &str, spans: &mut CellSpans) -> Result<Vec<GeneEdge>> {
        let open = self.expect(
            &Tok::Open('['),
            &format!("'[' starting the edge list of {field}"),
        )?;
        spans.edges = Some(open);
        let mut edges = Vec::new();
        while self.peek().0 != Tok::Close(']') {
            let what = format!("'(' starting an edge of {field} or ']' ending the list");
            self.expect(&Tok::Open('('), &what)?;
            let op = match self.peek().clone() {
                (Tok::Str(name), pos) => DartsOp::from_name(&name)
                    .ok_or_else(|| error_at(self.source, pos, unknown_op_message(&name)))?,
                _ => return self.unexpected("an operation name in quotes"),
            };
            self.bump();
            self.expect(&Tok::Comma, "',' after the operation name")?;
            let (input, input_pos) = self.int("an input state index")?;
            self.eat_comma();
            self.expect(&Tok::Close(')'), "')' closing the edge")?;
            edges.push(GeneEdge { op, input });
            spans.inputs.push(input_pos);
            if !self.eat_comma() && self.peek().0 != Tok::Close(']') {
                return self.unexpected("',' or ']' after an edge");
            }
        }
        self.bump();
        Ok(edges)
    }

    /// `[a, b, ...]`, `range(a, b)` or `list(range(a, b))`, the concat of `field`.
    fn concat(&mut self, field: &str, spans: &mut CellSpans) -> Result<Vec<usize>> {
        let start = self.peek().1;
        spans.concat = Some(start);
        let expected = format!("a concat for {field} such as [2, 3, 4, 5] or range(2, 6)");
        match self.peek().0.clone() {
            Tok::Open('[') => {
                self.bump();
                let mut states = Vec::new();
                while self.peek().0 != Tok::Close(']') {
                    let (state, pos) = self.int("a state index or ']'")?;
                    states.push(state);
                    spans.concat_items.push(pos);
                    if !self.eat_comma() && self.peek().0 != Tok::Close(']') {
                        return self.unexpected("',' or ']' after a state index");
                    }
                }
                self.bump();
                Ok(states)
            }
            Tok::Ident(name) if name == "range" => self.range(spans),
            Tok::Ident(name) if name == "list" => {
                self.bump();
                self.expect(&Tok::Open('('), "'(' after list")?;
                if self.peek().0 != Tok::Ident("range".into()) {
                    return self.unexpected("range(a, b) inside list(...)");
                }
                let states = self.range(spans)?;
                self.eat_comma();
                self.expect(&Tok::Close(')'), "')' closing list(...)")?;
                Ok(states)
            }
            _ => self.unexpected(&expected),
        }
    }

    /// `range(a, b)`, the states `a..b`; the `range` keyword is the next token.
    fn range(&mut self, spans: &mut CellSpans) -> Result<Vec<usize>> {
        let start = self.bump().1;
        self.expect(&Tok::Open('('), "'(' after range")?;
        let (from, _) = self.int("the first state of the range")?;
        self.expect(&Tok::Comma, "',' and the end of the range (range(a, b))")?;
        let (to, to_pos) = self.int("the end of the range (exclusive)")?;
        self.eat_comma();
        self.expect(&Tok::Close(')'), "')' closing range(a, b)")?;
        // Every node of a genotype is spelled out in the text, so a range longer than the text
        // cannot be valid; rejecting it here also avoids allocating a huge list.
        if to.saturating_sub(from) > self.text_len {
            let msg = format!("range({from}, {to}) names more states than the genotype has nodes");
            return Err(error_at(self.source, to_pos, msg));
        }
        spans.concat_items = vec![start; to.saturating_sub(from)];
        Ok((from..to).collect())
    }
}

/// The argument names of `Genotype(...)`, in the DARTS namedtuple order.
const FIELDS: [&str; 4] = ["normal", "normal_concat", "reduce", "reduce_concat"];

/// `[('op', input), ...]` for one cell.
fn edges_text(edges: &[GeneEdge]) -> String {
    let edges: Vec<String> = edges
        .iter()
        .map(|e| format!("('{}', {})", e.op, e.input))
        .collect();
    format!("[{}]", edges.join(", "))
}

/// `range(a, b)` for a contiguous concat, `[a, b, ...]` otherwise.
fn concat_text(concat: &[usize]) -> String {
    // Checked arithmetic: this may print a genotype that was never validated.
    let contiguous = concat.windows(2).all(|w| w[0].checked_add(1) == Some(w[1]));
    match (
        concat.first(),
        concat.last().and_then(|last| last.checked_add(1)),
    ) {
        (Some(&first), Some(end)) if contiguous => format!("range({first}, {end})"),
        _ => {
            let states: Vec<String> = concat.iter().map(usize::to_string).collect();
            format!("[{}]", states.join(", "))
        }
    }
}

impl Genotype {
    /// Reads the DARTS text form and validates it; errors say `source:line:column`.
    ///
    /// # Errors
    /// [`NasError::Genotype`] for a syntax error (with what was expected and what was found), an
    /// unknown operation or field, a missing field, or a genotype that fails
    /// [`Genotype::validate`].
    pub fn from_darts_text(s: &str, source: &str) -> Result<Genotype> {
        let tokens = tokenize(s, source)?;
        Parser {
            tokens,
            next: 0,
            source,
            text_len: s.len(),
        }
        .genotype()
    }

    /// The DARTS text form, on one line, as DARTS prints it (concat as a range when contiguous).
    pub fn to_darts_text(&self) -> String {
        format!(
            "Genotype(normal={}, normal_concat={}, reduce={}, reduce_concat={})",
            edges_text(&self.normal.edges),
            concat_text(&self.normal.concat),
            edges_text(&self.reduce.edges),
            concat_text(&self.reduce.concat)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::published;

    /// The error text of parsing `text` from the source `DARTS.txt`.
    fn error(text: &str) -> String {
        Genotype::from_darts_text(text, "DARTS.txt")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn prints_the_darts_form() {
        let text = published::darts_v2().to_darts_text();
        assert!(text.starts_with("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "));
        assert!(text.contains("('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=["));
        assert!(text.ends_with("('max_pool_3x3', 1)], reduce_concat=range(2, 6))"));
        assert_eq!(concat_text(&[2, 3, 5]), "[2, 3, 5]");
        assert_eq!(concat_text(&[4]), "range(4, 5)");
        assert_eq!(concat_text(&[]), "[]");
        assert_eq!(concat_text(&[usize::MAX]), format!("[{}]", usize::MAX));
    }

    #[test]
    fn accepts_python_variations() {
        let text = "DARTS_V2 = Genotype(\n  reduce_concat=list(range(2, 6),),  # any order\n  \
                    reduce=[(\"max_pool_3x3\", 0), ('max_pool_3x3', 1), ('skip_connect', 2), \
                    ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), \
                    ('skip_connect', 2), ('max_pool_3x3', 1,),],\n\tnormal_concat = [2, 3, 4, 5,],\
                    \n  normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), \
                    ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), \
                    ('skip_connect', 0), ('dil_conv_3x3', 2)],\n)\n";
        assert_eq!(
            Genotype::from_darts_text(text, "t").unwrap(),
            published::darts_v2()
        );
    }

    #[test]
    fn accepts_positional_arguments() {
        let g = published::darts_v1();
        let text = format!(
            "Genotype({}, [2, 3, 4, 5], {}, range(2, 6))",
            edges_text(&g.normal.edges),
            edges_text(&g.reduce.edges)
        );
        assert_eq!(Genotype::from_darts_text(&text, "t").unwrap(), g);
        let err = error(&format!(
            "Genotype(normal=[], {})",
            edges_text(&g.reduce.edges)
        ));
        assert!(
            err.contains("DARTS.txt:1:21: expected a keyword argument"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_give_position_expected_and_found() {
        let err = error("Genotype(normal=[('sep_conv_3x3', 0]");
        assert!(
            err.starts_with("genotype DARTS.txt:1:36: expected ')' closing the edge"),
            "{err}"
        );
        assert!(err.ends_with("found ']'"), "{err}");
        let err = error("Genotype(normal=[('sep_conv_3x3', 0)]\n");
        assert!(err.contains("DARTS.txt:2:1: expected ',' or ')' after the value of normal"));
        assert!(err.ends_with("found end of input"), "{err}");
        let err = error("Genotype(normal=[('sep_conv_3x3' 0)])");
        assert!(err.contains("1:34: expected ',' after the operation name, found number 0"));
        let err = error("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=range(2, 6)");
        assert!(err.contains("found end of input"), "{err}");
        let err = error("Genotype(normal=[('sep_conv_3x3, 0)])");
        assert!(err.contains("1:19: unterminated string"), "{err}");
        let err = error("Genotype(normal=[('skip_connect', -1)])");
        assert!(err.contains("1:35: unexpected character '-'"), "{err}");
        let err = error("genotype(normal=[])");
        assert!(
            err.contains("1:1: expected 'Genotype(', found name 'genotype'"),
            "{err}"
        );
        let err = error("Genotype(normals=[])");
        assert!(
            err.contains("1:10: unknown field 'normals' (expected one of normal,"),
            "{err}"
        );
        let err = error("Genotype(normal=[], normal=[])");
        assert!(err.contains("1:21: field normal is given twice"), "{err}");
        let err = error("Genotype(normal_concat=range(2, 6)) extra");
        assert!(err.contains("1:37: expected the end of the text"), "{err}");
        let err = error("Genotype(normal_concat={2, 3})");
        assert!(err.contains("1:24: unexpected character '{'"), "{err}");
        let err = error("Genotype(normal_concat=range(2, 999999999))");
        assert!(
            err.contains("range(2, 999999999) names more states"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_point_at_the_entry() {
        let mut g = published::darts_v2();
        g.normal.edges[5].input = 5;
        let text = g.to_darts_text();
        let err = error(&text);
        // The position is that of the offending input index, 1-based.
        let col = text.find("('skip_connect', 5)").unwrap() + "('skip_connect', ".len() + 1;
        assert!(err.contains(&format!(
            "DARTS.txt:1:{col}: normal[5]: node 2 takes input 5"
        )));
        assert!(err.contains("but only states 0..=3 exist"), "{err}");

        g = published::darts_v2();
        g.reduce.concat = vec![2, 4, 4];
        let text = g.to_darts_text();
        let err = error(&text);
        assert!(
            err.contains("reduce_concat[2]: concat must be strictly increasing"),
            "{err}"
        );
        let col = text.rfind('4').unwrap() + 1;
        assert!(err.contains(&format!("DARTS.txt:1:{col}:")), "{err}");
    }
}
