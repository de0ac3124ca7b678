//! The public genotype API end to end: both textual forms, derivation and error reporting.

use nasrs::space::published::{self, DARTS_V1, DARTS_V2};
use nasrs::space::{CellGenotype, DartsOp, GeneEdge, Genotype, derive_cell, derive_genotype};

/// A cell from `(operation name, input)` pairs and a concat.
fn cell(edges: &[(&str, usize)], concat: &[usize]) -> CellGenotype {
    CellGenotype {
        edges: edges
            .iter()
            .map(|&(name, input)| GeneEdge {
                op: DartsOp::from_name(name).unwrap(),
                input,
            })
            .collect(),
        concat: concat.to_vec(),
    }
}

/// A 3-node genotype whose normal concat skips node 1 (state 3).
fn three_nodes() -> Genotype {
    Genotype {
        normal: cell(
            &[
                ("sep_conv_5x5", 0),
                ("dil_conv_5x5", 1),
                ("skip_connect", 2),
                ("avg_pool_3x3", 0),
                ("dil_conv_3x3", 3),
                ("sep_conv_3x3", 2),
            ],
            &[2, 4],
        ),
        reduce: cell(
            &[
                ("max_pool_3x3", 1),
                ("max_pool_3x3", 0),
                ("none", 2),
                ("skip_connect", 1),
                ("avg_pool_3x3", 3),
                ("max_pool_3x3", 0),
            ],
            &[2, 3, 4],
        ),
    }
}

/// A 5-node genotype with non-contiguous concats in both cells.
fn five_nodes() -> Genotype {
    let edges = [
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 2),
        ("dil_conv_3x3", 0),
        ("sep_conv_5x5", 3),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 4),
        ("dil_conv_5x5", 2),
        ("avg_pool_3x3", 5),
        ("skip_connect", 0),
    ];
    Genotype {
        normal: cell(&edges, &[3, 5, 6]),
        reduce: cell(&edges, &[2, 6]),
    }
}

fn all_genotypes() -> Vec<Genotype> {
    vec![
        published::darts_v1(),
        published::darts_v2(),
        three_nodes(),
        five_nodes(),
    ]
}

#[test]
fn darts_text_round_trips() {
    for g in all_genotypes() {
        let text = g.to_darts_text();
        assert_eq!(Genotype::from_darts_text(&text, "t").unwrap(), g, "{text}");
        assert_eq!(Genotype::parse(&text, "t").unwrap(), g);
    }
    assert!(
        five_nodes()
            .to_darts_text()
            .contains("normal_concat=[3, 5, 6], reduce=[")
    );
    assert!(
        five_nodes()
            .to_darts_text()
            .ends_with("reduce_concat=[2, 6])")
    );
}

#[test]
fn json_round_trips() {
    for g in all_genotypes() {
        let json = g.to_json_string();
        assert_eq!(Genotype::from_json_str(&json, "j").unwrap(), g, "{json}");
        assert_eq!(Genotype::parse(&json, "j").unwrap(), g);
        let compact = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Genotype>(&compact).unwrap(), g);
    }
}

#[test]
fn json_form_has_the_documented_shape() {
    let json = r#"{"normal": [["sep_conv_3x3", 0], ["skip_connect", 1]], "normal_concat": [2],
                   "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]}"#;
    let g = Genotype::from_json_str(json, "j").unwrap();
    assert_eq!(g.nodes(), 1);
    assert_eq!(
        g.normal.edges[1],
        GeneEdge {
            op: DartsOp::SkipConnect,
            input: 1
        }
    );
}

#[test]
fn darts_v2_parses_to_the_published_cells_edge_by_edge() {
    use DartsOp::{DilConv3x3, MaxPool3x3, SepConv3x3, SkipConnect};
    let g = Genotype::parse(DARTS_V2, "DARTS_V2").unwrap();
    let normal = [
        (SepConv3x3, 0),
        (SepConv3x3, 1),
        (SepConv3x3, 0),
        (SepConv3x3, 1),
        (SepConv3x3, 1),
        (SkipConnect, 0),
        (SkipConnect, 0),
        (DilConv3x3, 2),
    ];
    let reduce = [
        (MaxPool3x3, 0),
        (MaxPool3x3, 1),
        (SkipConnect, 2),
        (MaxPool3x3, 1),
        (MaxPool3x3, 0),
        (SkipConnect, 2),
        (SkipConnect, 2),
        (MaxPool3x3, 1),
    ];
    assert_eq!(g.normal.edges.len(), 8);
    assert_eq!(g.reduce.edges.len(), 8);
    for (i, (op, input)) in normal.into_iter().enumerate() {
        assert_eq!(g.normal.edges[i], GeneEdge { op, input }, "normal edge {i}");
    }
    for (i, (op, input)) in reduce.into_iter().enumerate() {
        assert_eq!(g.reduce.edges[i], GeneEdge { op, input }, "reduce edge {i}");
    }
    assert_eq!(g.normal.concat, [2, 3, 4, 5]);
    assert_eq!(g.reduce.concat, [2, 3, 4, 5]);
    assert_eq!(g, published::darts_v2());
    assert_eq!(
        Genotype::parse(DARTS_V1, "DARTS_V1").unwrap(),
        published::darts_v1()
    );
}

/// A weight row over the eight operations with `none` at 0.6 and `op` at `w` (others 0.05).
fn row(op: DartsOp, w: f32) -> Vec<f32> {
    let mut row = vec![0.05; 8];
    row[0] = 0.6;
    row[op.index()] = w;
    row
}

#[test]
fn derivation_ignores_none_and_keeps_its_input() {
    use DartsOp::{AvgPool3x3, DilConv3x3, MaxPool3x3, SepConv3x3, SepConv5x5, SkipConnect};
    // `none` (0.6) is the largest weight on every edge. Worked out by hand:
    //   node 0, inputs 0..=1: both kept -> sep_conv_3x3(0), skip_connect(1)
    //   node 1, inputs 0..=2: strengths 0.10, 0.30, 0.20 -> inputs 1 and 2:
    //           max_pool_3x3(1), dil_conv_3x3(2)
    //   node 2, inputs 0..=3: strengths 0.25, 0.07, 0.08, 0.25 -> tie, inputs 0 and 3:
    //           sep_conv_5x5(0), avg_pool_3x3(3)
    let normal = vec![
        row(SepConv3x3, 0.2),
        row(SkipConnect, 0.2),
        row(SepConv3x3, 0.10),
        row(MaxPool3x3, 0.30),
        row(DilConv3x3, 0.20),
        row(SepConv5x5, 0.25),
        row(SkipConnect, 0.07),
        row(MaxPool3x3, 0.08),
        row(AvgPool3x3, 0.25),
    ];
    // The reduction table is the normal one reversed; here it only checks that nothing changes.
    let reduce = normal.iter().rev().cloned().collect::<Vec<_>>();
    let (normal_before, reduce_before) = (normal.clone(), reduce.clone());
    let g = derive_genotype(&normal, &reduce, 3).unwrap();
    assert_eq!(normal, normal_before);
    assert_eq!(reduce, reduce_before);
    let expected = cell(
        &[
            ("sep_conv_3x3", 0),
            ("skip_connect", 1),
            ("max_pool_3x3", 1),
            ("dil_conv_3x3", 2),
            ("sep_conv_5x5", 0),
            ("avg_pool_3x3", 3),
        ],
        &[2, 3, 4],
    );
    assert_eq!(g.normal, expected);
    for c in [&g.normal, &g.reduce] {
        assert!(c.edges.iter().all(|e| e.op != DartsOp::None));
    }
    g.validate("derived").unwrap();
}

#[test]
fn strong_none_edge_loses_to_a_stronger_real_edge() {
    // Node 1: input 0 is nearly all `none` (0.93, real ops 0.01); inputs 1 and 2 have modest
    // real operations (0.2, 0.15) but a smaller `none`. Inputs 1 and 2 must be kept.
    let mut weak = vec![0.01; 8];
    weak[0] = 0.93;
    let mut one = vec![0.1; 8];
    one[DartsOp::SepConv5x5.index()] = 0.2;
    let mut two = vec![0.1; 8];
    two[DartsOp::SkipConnect.index()] = 0.15;
    let weights = vec![vec![0.125; 8], vec![0.125; 8], weak, one, two];
    let c = derive_cell(&weights, 2).unwrap();
    assert_eq!(
        c.node_edges(1)[0],
        GeneEdge {
            op: DartsOp::SepConv5x5,
            input: 1
        }
    );
    assert_eq!(
        c.node_edges(1)[1],
        GeneEdge {
            op: DartsOp::SkipConnect,
            input: 2
        }
    );
}

/// The error text of parsing `text` (either form) from the source `DARTS.txt`.
fn error(text: &str) -> String {
    Genotype::parse(text, "DARTS.txt").unwrap_err().to_string()
}

#[test]
fn error_unknown_operation() {
    let text = DARTS_V2.replacen("'dil_conv_3x3'", "'sep_conv_7x7'", 1);
    let col = text.find("'sep_conv_7x7'").unwrap() + 1;
    let err = error(&text);
    assert!(err.contains(&format!(
        "DARTS.txt:1:{col}: unknown operation 'sep_conv_7x7'"
    )));
    assert!(err.contains("(valid: none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3"));
}

#[test]
fn error_input_out_of_range() {
    let text = DARTS_V2.replacen(
        "('skip_connect', 0), ('skip_connect', 0)",
        "('skip_connect', 5), ('skip_connect', 0)",
        1,
    );
    let col = text.find("('skip_connect', 5)").unwrap() + "('skip_connect', ".len() + 1;
    let err = error(&text);
    assert!(err.contains(&format!("DARTS.txt:1:{col}: ")), "{err}");
    assert!(
        err.contains("normal[5]: node 2 takes input 5 but only states 0..=3 exist"),
        "{err}"
    );
}

#[test]
fn error_odd_edge_count() {
    let text = DARTS_V1.replacen(
        "('avg_pool_3x3', 0)], reduce_concat",
        "('avg_pool_3x3', 0), ('none', 0)], reduce_concat",
        1,
    );
    let err = error(&text);
    assert!(
        err.contains("reduce: odd number of edges (9); each intermediate node takes exactly two")
    );
}

#[test]
fn error_missing_field() {
    let text = DARTS_V1.replacen(", reduce_concat=[2, 3, 4, 5]", "", 1);
    let err = error(&text);
    assert!(err.starts_with("genotype DARTS.txt:"), "{err}");
    assert!(err.ends_with("missing field reduce_concat"), "{err}");
}

#[test]
fn error_unbalanced_bracket() {
    let err = error("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)");
    assert!(
        err.contains("DARTS.txt:1:58: expected ',' or ']' after an edge"),
        "{err}"
    );
    assert!(err.ends_with("found end of input"), "{err}");
    let err = error("Genotype(normal=[('sep_conv_3x3', 0]");
    assert!(
        err.contains("DARTS.txt:1:36: expected ')' closing the edge, found ']'"),
        "{err}"
    );
}

#[test]
fn error_bad_concat() {
    let err =
        error(&DARTS_V1.replacen("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 7)", 1));
    assert!(
        err.contains("normal_concat[4]: state 6 does not exist"),
        "{err}"
    );
    let err = error(&DARTS_V1.replacen("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 3]", 1));
    assert!(
        err.contains("normal_concat[2]: concat must be strictly increasing"),
        "{err}"
    );
    let err = error(&DARTS_V1.replacen("normal_concat=[2, 3, 4, 5]", "normal_concat=2", 1));
    assert!(err.contains("expected a concat for normal_concat such as [2, 3, 4, 5] or range"));
    assert!(err.ends_with("found number 2"), "{err}");
    let err =
        error(&DARTS_V1.replacen("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2 6)", 1));
    assert!(
        err.contains("expected ',' and the end of the range"),
        "{err}"
    );
}

#[test]
fn error_json_wrong_type() {
    let json = published::darts_v1()
        .to_json_string()
        .replacen("[2, 3, 4, 5]", "\"2..6\"", 1);
    let err = error(&json);
    assert!(err.starts_with("genotype DARTS.txt:"), "{err}");
    assert!(err.contains("invalid type: string \"2..6\""), "{err}");
    assert!(
        err.contains("expected a list of state indices at normal_concat"),
        "{err}"
    );
    let err = error(r#"{"normal": [["sep_conv_3x3", 0.5]]}"#);
    assert!(err.starts_with("genotype DARTS.txt:1:"), "{err}");
    assert!(err.contains("expected a state index (non-negative integer) at normal[0][1]"));
}

#[test]
fn operation_registry() {
    let reference = [
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    ];
    assert_eq!(DartsOp::ALL.map(DartsOp::name), reference);
    for (i, op) in DartsOp::ALL.into_iter().enumerate() {
        assert_eq!(op.index(), i);
        assert_eq!(DartsOp::from_name(op.name()), Some(op));
        assert_eq!(op.name().parse::<DartsOp>().unwrap(), op);
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<DartsOp>(&json).unwrap(), op);
        assert_eq!(op.is_parameter_free(), i < 4);
    }
}

#[test]
fn render_lists_nodes_concat_and_parameter_free_count() {
    let text = three_nodes().render();
    assert!(
        text.contains("  node 2 = dil_conv_3x3(node 1) + sep_conv_3x3(node 0)\n"),
        "{text}"
    );
    assert!(
        text.contains("  c_{k} = concat(node 0, node 2)\n"),
        "{text}"
    );
    assert!(text.contains("  parameter-free ops: 6 of 6\n"), "{text}");
}
