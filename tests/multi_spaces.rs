//! The multi-trial search spaces and the table estimator, checked against hand counts, the
//! published NAS-Bench-201 parameter range and the real NAS-Bench-201 table.
//!
//! Tests reading `../shared/data` skip with a message when it is absent, except under CI (env
//! `CI` set), where a missing folder is a failure.

mod common;

use common::shared_data;

use std::collections::HashSet;
use std::path::PathBuf;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use nasrs::multi::space::{encode, encoding_len, mutate, neighbours, sample};
use nasrs::multi::spaces::{ChainSpace, ChoiceSpace, DartsCellSpace, NB201_OPS, Nb201Space};
use nasrs::multi::tabular::{NB201_FILE, Nb201Dataset, TableEstimator, TableOptions};
use nasrs::multi::{Estimator, Space};
use nasrs::space::published;

/// The NAS-Bench-201 export, if the data folder is there.
fn nb201_csv() -> Option<PathBuf> {
    shared_data().map(|root| root.join("nas-bench-201").join(NB201_FILE))
}

/// A fresh directory under the system temp dir, unique to this process and `name`.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("nasrs-multi-spaces-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The two-choice example space of the choices file format.
fn example_choices() -> ChoiceSpace {
    ChoiceSpace::new(vec![
        ("depth".into(), vec!["2".into(), "3".into(), "4".into()]),
        ("op".into(), vec!["conv3x3".into(), "conv5x5".into()]),
    ])
    .unwrap()
}

/// One space of every kind, with a name for failure messages.
fn all_spaces() -> Vec<(&'static str, Box<dyn Space>)> {
    vec![
        ("choices", Box::new(example_choices())),
        ("nb201", Box::new(Nb201Space::new())),
        ("darts-4", Box::new(DartsCellSpace::default())),
        ("darts-2", Box::new(DartsCellSpace::new(2).unwrap())),
        ("chain-5", Box::new(ChainSpace::with_darts_ops(5).unwrap())),
    ]
}

#[test]
fn mutation_changes_exactly_one_gene_and_keeps_validity() {
    for (name, space) in all_spaces() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for draw in 0..2_000 {
            let parent = sample(space.as_ref(), &mut rng);
            assert!(space.is_valid(&parent), "{name}: sampled {parent:?}");
            let child = mutate(space.as_ref(), &parent, &mut rng)
                .unwrap_or_else(|| panic!("{name}: no mutation of {parent:?}"));
            let changed = parent.iter().zip(&child).filter(|(a, b)| a != b).count();
            assert_eq!(changed, 1, "{name} draw {draw}: {parent:?} -> {child:?}");
            assert!(space.is_valid(&child), "{name}: invalid child {child:?}");
            assert_ne!(space.key(&parent), space.key(&child), "{name}: {child:?}");
            // Every key reads back to an architecture with the same key.
            let back = space.parse(&space.key(&child)).unwrap();
            assert_eq!(space.key(&back), space.key(&child), "{name}");
        }
    }
}

#[test]
fn nb201_has_24_distinct_neighbours_everywhere() {
    // Six edges, each with 4 other operations: 6 x 4 = 24, and no rule forbids any of them.
    let space = Nb201Space::new();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..500 {
        let arch = sample(&space, &mut rng);
        let near = neighbours(&space, &arch);
        assert_eq!(near.len(), 24, "{arch:?}");
        let keys: HashSet<String> = near.iter().map(|a| space.key(a)).collect();
        assert_eq!(keys.len(), 24);
        assert!(!keys.contains(&space.key(&arch)));
        assert!(near.iter().all(|a| space.is_valid(a)));
    }
}

#[test]
fn darts_neighbours_match_the_hand_count() {
    // In a cell with n nodes, node i has two operation genes with 6 other operations each, and
    // two input genes with i + 2 options of which the current one and the other pair's input
    // are excluded: i alternatives each. Per node 12 + 2i; per cell 12n + n(n - 1); two cells.
    // n = 4: 2 x (48 + 12) = 120.  n = 2: 2 x (24 + 2) = 52.
    for (nodes, expected) in [(4, 120), (2, 52)] {
        let space = DartsCellSpace::new(nodes).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(nodes as u64);
        for _ in 0..50 {
            let arch = sample(&space, &mut rng);
            let near = neighbours(&space, &arch);
            assert_eq!(near.len(), expected, "nodes {nodes}: {arch:?}");
            let keys: HashSet<String> = near.iter().map(|a| space.key(a)).collect();
            assert_eq!(keys.len(), expected, "neighbours must be distinct cells");
            assert!(!keys.contains(&space.key(&arch)));
            assert!(near.iter().all(|a| space.is_valid(a)));
        }
    }

    // One architecture spelled out: DARTS-V2 read from its published text.
    let space = DartsCellSpace::default();
    let arch = space.parse(published::DARTS_V2).unwrap();
    assert_eq!(neighbours(&space, &arch).len(), 120);
}

#[test]
fn nb201_samples_are_uniform_over_operations() {
    // 50,000 draws of gene 0 with a fixed seed: counts of the 5 operations against 10,000 each.
    // Chi-square with 4 degrees of freedom; its 99.9% quantile is 18.47, so a uniform sampler
    // passes for all but 1 in 1,000 seeds, while a sampler giving one operation 22% instead of
    // 20% (expected count 11,000) scores about 125 and fails.
    let space = Nb201Space::new();
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut counts = [0u32; 5];
    for _ in 0..50_000 {
        let arch = sample(&space, &mut rng);
        counts[arch[0]] += 1;
    }
    let chi2: f64 = counts
        .iter()
        .map(|&c| (f64::from(c) - 10_000.0).powi(2) / 10_000.0)
        .sum();
    assert!(chi2 < 18.47, "chi-square {chi2:.2} for counts {counts:?}");

    // DARTS draws through rejection: every one valid, and both input orders of node 0 occur.
    let darts = DartsCellSpace::default();
    let mut orders = HashSet::new();
    for _ in 0..1_000 {
        let arch = sample(&darts, &mut rng);
        assert!(darts.is_valid(&arch));
        orders.insert((arch[1], arch[3]));
    }
    assert_eq!(orders, HashSet::from([(0, 1), (1, 0)]));
}

#[test]
fn nb201_parser_reads_every_row_of_the_table() {
    let Some(path) = nb201_csv() else { return };
    let text = std::fs::read_to_string(&path).unwrap();
    let space = Nb201Space::new();
    let table = TableEstimator::nb201(&path, Nb201Dataset::Cifar10).unwrap();
    assert_eq!(table.len(), 15_625);

    let mut keys = HashSet::new();
    for (row, line) in text.lines().skip(1).enumerate() {
        // The cell string is the fourth column; no field of this file is quoted.
        let cell = line.split(',').nth(3).unwrap();
        let arch = space.parse(cell).unwrap();
        assert_eq!(space.key(&arch), cell, "row {row}");
        assert_eq!(table.index(&space, &arch), Some(row), "row {row}");
        assert_eq!(table.key_at(row), Some(cell));
        keys.insert(cell.to_string());
    }
    assert_eq!(keys.len(), 15_625);
}

#[test]
fn nb201_table_reproduces_the_checked_facts() {
    // The maxima, means and minima listed under "Facts checked" in ../shared/data/README.md;
    // tolerances are half a unit of the last decimal written there.
    let Some(path) = nb201_csv() else { return };
    let space = Nb201Space::new();
    let facts = [
        (Nb201Dataset::Cifar10, 94.3733, 6111, 87.063, 10.0, 0.005),
        (Nb201Dataset::Cifar100, 73.5133, 9930, 61.406, 1.0, 0.005),
        (
            Nb201Dataset::ImageNet16_120,
            47.3111,
            857,
            33.586,
            0.83,
            0.005,
        ),
    ];
    for (dataset, best, best_index, mean, min, min_tol) in facts {
        let table = TableEstimator::nb201(&path, dataset).unwrap();
        let accuracies: Vec<f64> = (0..table.len())
            .map(|i| table.value(i, "test_accuracy").unwrap())
            .collect();
        // The first index holding the maximum: on CIFAR-10, cell 13714 (the operations into
        // node 3 from nodes 1 and 2 exchanged) ties with 6111 to the last digit of the file.
        let max = accuracies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let argmax = accuracies.iter().position(|&a| a == max).unwrap();
        assert_eq!(argmax, best_index, "{dataset}");
        assert!((max - best).abs() < 5e-5, "{dataset}: max {max}");
        let found_mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
        assert!(
            (found_mean - mean).abs() < 5e-4,
            "{dataset}: mean {found_mean}"
        );
        let found_min = accuracies.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            (found_min - min).abs() < min_tol,
            "{dataset}: min {found_min}"
        );

        assert_eq!(
            table.selection_metric(),
            ("test_accuracy".to_string(), true)
        );
        assert!(table.deterministic());
        assert!(table.describe().contains("oracle"));
    }

    // The CIFAR-10 best cell, through the estimator interface.
    let table = TableEstimator::nb201(&path, Nb201Dataset::Cifar10).unwrap();
    let best = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|\
                nor_conv_1x1~2|";
    let arch = space.parse(best).unwrap();
    assert_eq!(table.index(&space, &arch), Some(6111));
    let eval = table.evaluate(&space, &arch, 0).unwrap();
    assert!((eval.metric("test_accuracy").unwrap() - 94.3733).abs() < 5e-5);
    assert_eq!(
        eval.metric("params").unwrap(),
        Nb201Space::params(&arch, 10) as f64
    );
    assert_eq!((eval.epochs, eval.seconds), (0.0, 0.0));
}

#[test]
fn nb201_params_match_hand_counts_and_the_published_range() {
    // Parts that do not depend on the cell, for a 10-way classifier:
    //   stem: 3x3 conv 3->16 (3*16*9 = 432) + BN (32)                                  =    464
    //   residual 16->32: 3x3 conv 16*32*9 = 4,608 + BN 64; 3x3 conv 32*32*9 = 9,216 + BN 64;
    //     1x1 shortcut 16*32 = 512                                                     = 14,464
    //   residual 32->64: 18,432 + 128 + 36,864 + 128 + 2,048                           = 57,600
    //   last BN 2*64 = 128; classifier 64*10 + 10 = 650                                =    778
    //   total                                                                          = 73,306
    // All-none cells add nothing: 73,306.
    // All nor_conv_3x3: each stage has 5 cells x 6 edges x (9C^2 + 2C):
    //   C=16: 30 x 2,336 = 70,080; C=32: 30 x 9,280 = 278,400; C=64: 30 x 36,992 = 1,109,760;
    //   73,306 + 1,458,240 = 1,531,546.
    // All nor_conv_1x1: 30 x (C^2 + 2C) = 30 x (288 + 1,088 + 4,224) = 168,000 -> 241,306.
    // CIFAR-100 adds 90 x 65 = 5,850 to the classifier; ImageNet16-120 adds 110 x 65 = 7,150.
    //
    // Published check: the parameter counts stored in the NAS-Bench-201 v1.1 benchmark file
    // (`NAS-Bench-201-v1_1-096897`, `params` in millions) range over 0.073306-1.531546 on
    // CIFAR-10, 0.079156-1.537396 on CIFAR-100 and 0.080456-1.538696 on ImageNet16-120, as
    // listed by public tools that read the file (e.g. the NAS-Bench-201 problem of EvoXBench).
    // The largest cell matches NATS-Bench's ~1.53 MB for CIFAR-10.
    let none = [0; 6];
    let conv3 = [3; 6];
    let conv1 = [2; 6];
    assert_eq!(Nb201Space::params(&none, 10), 73_306);
    assert_eq!(Nb201Space::params(&conv3, 10), 1_531_546);
    assert_eq!(Nb201Space::params(&conv1, 10), 241_306);
    assert_eq!(Nb201Space::params(&none, 100), 79_156);
    assert_eq!(Nb201Space::params(&conv3, 100), 1_537_396);
    assert_eq!(Nb201Space::params(&none, 120), 80_456);
    assert_eq!(Nb201Space::params(&conv3, 120), 1_538_696);
    // Parameter-free operations never add anything.
    assert_eq!(Nb201Space::params(&[1, 4, 0, 1, 4, 1], 10), 73_306);

    // Over the whole table the range is exactly the published one.
    let Some(path) = nb201_csv() else { return };
    for (dataset, low, high) in [
        (Nb201Dataset::Cifar10, 73_306.0, 1_531_546.0),
        (Nb201Dataset::Cifar100, 79_156.0, 1_537_396.0),
        (Nb201Dataset::ImageNet16_120, 80_456.0, 1_538_696.0),
    ] {
        let table = TableEstimator::nb201(&path, dataset).unwrap();
        let params: Vec<f64> = (0..table.len())
            .map(|i| table.value(i, "params").unwrap())
            .collect();
        let min = params.iter().copied().fold(f64::INFINITY, f64::min);
        let max = params.iter().copied().fold(0.0, f64::max);
        assert_eq!((min, max), (low, high), "{dataset}");
    }
}

#[test]
fn nb201_parser_rejects_malformed_strings() {
    let space = Nb201Space::new();
    let cases = [
        ("", "expected 3 nodes"),
        (
            "|none~0|+|none~0|none~1|",
            "expected 3 nodes (groups `|...|` joined by `+`), found 2",
        ),
        (
            "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|",
            "found 4",
        ),
        (
            "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            "node 1 (column 1): expected `|` at the start",
        ),
        (
            "|none~0|+|none~0|none~1+|none~0|none~1|none~2|",
            "node 2 (column 10): expected `|` at the end",
        ),
        (
            "|none~0|+|none~0|+|none~0|none~1|none~2|",
            "node 2 (column 10): expected 2 edge(s)",
        ),
        (
            "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|",
            "node 3 (column 26): expected 3 edge(s)",
        ),
        (
            "|none~0|+|none~0|none~1|+|none~0|conv_3x3~1|none~2|",
            "node 3, edge 1 (column 34): unknown operation `conv_3x3`",
        ),
        (
            "|none~0|+|none~1|none~0|+|none~0|none~1|none~2|",
            "node 2, edge 0 (column 11): input must be 0",
        ),
        (
            "|none~0|+|none~0|none~1|+|none~0|none~1|none~x|",
            "node 3, edge 2 (column 41): input `x` is not a node number",
        ),
        (
            "|none~0|+|none~0|none1|+|none~0|none~1|none~2|",
            "node 2, edge 1 (column 18): expected `op~1`, found `none1`",
        ),
    ];
    for (text, expected) in cases {
        let err = space.parse(text).unwrap_err().to_string();
        assert!(err.contains(expected), "`{text}`: {err}");
        assert!(err.contains("not a NAS-Bench-201 cell"), "{err}");
    }
    // Surrounding spaces are tolerated and columns still count from the raw text.
    let arch = space
        .parse("  |none~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|\n")
        .unwrap();
    assert_eq!(arch, vec![0, 0, 0, 0, 0, 4]);
    let err = space
        .parse("  |none~0|+|none~0|bad~1|+|none~0|none~1|none~2|")
        .unwrap_err()
        .to_string();
    assert!(err.contains("node 2, edge 1 (column 20)"), "{err}");
    assert_eq!(NB201_OPS.len(), 5);
}

#[test]
fn darts_keys_genotypes_and_encodings_ignore_pair_order() {
    let space = DartsCellSpace::default();
    let v2 = space.parse(published::DARTS_V2).unwrap();
    assert!(space.is_valid(&v2));

    // The same cells with the two pairs of every node swapped.
    let mut swapped = v2.clone();
    for node_start in (0..v2.len()).step_by(4) {
        swapped[node_start..node_start + 4].rotate_left(2);
    }
    assert_ne!(swapped, v2);
    assert_eq!(space.key(&swapped), space.key(&v2));
    assert_eq!(encode(&space, &swapped), encode(&space, &v2));
    assert_eq!(space.canonical(&swapped), space.canonical(&v2));

    // Encoding length, by hand: per cell 8 operation genes x 7 + input genes 2 x (2+3+4+5) =
    // 56 + 28 = 84; two cells: 168.
    assert_eq!(encoding_len(&space), 168);
    assert_eq!(encode(&space, &v2).len(), 168);
    assert_eq!(encode(&space, &v2).iter().sum::<f32>(), 32.0);
    assert_eq!(encoding_len(&Nb201Space::new()), 30);
    assert_eq!(encoding_len(&ChainSpace::with_darts_ops(5).unwrap()), 35);
    assert_eq!(encoding_len(&example_choices()), 5);

    // The genotype holds the same pairs per node as the published one, in canonical order.
    let genotype = space.genotype(&v2);
    let published = published::darts_v2();
    for (ours, theirs) in [
        (&genotype.normal, &published.normal),
        (&genotype.reduce, &published.reduce),
    ] {
        assert_eq!(ours.concat, theirs.concat);
        for node in 0..4 {
            let mut expected = theirs.node_edges(node).to_vec();
            expected.sort_by_key(|e| (e.input, e.op));
            assert_eq!(ours.node_edges(node), expected.as_slice(), "node {node}");
        }
    }
    // Normal node 2 is written (sep_conv_3x3, 1), (skip_connect, 0); canonical puts input 0 first.
    assert_eq!(genotype.normal.node_edges(2)[0].op.name(), "skip_connect");

    // The key is DARTS text; the JSON form of the same genotype reads to the same key.
    let key = space.key(&v2);
    assert!(key.starts_with("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)"));
    assert_eq!(space.key(&space.parse(&key).unwrap()), key);
    let json = published::darts_v2().to_json_string();
    assert_eq!(space.key(&space.parse(&json).unwrap()), key);
}

#[test]
fn darts_parse_rejects_what_the_space_cannot_hold() {
    let space = DartsCellSpace::default();
    let with_none = published::DARTS_V2.replacen("('sep_conv_3x3', 0)", "('none', 0)", 1);
    let err = space.parse(&with_none).unwrap_err().to_string();
    assert!(
        err.contains("normal[0]: `none` is not an operation of this space"),
        "{err}"
    );

    let same_inputs = published::DARTS_V2.replacen("('sep_conv_3x3', 1)", "('sep_conv_3x3', 0)", 1);
    let err = space.parse(&same_inputs).unwrap_err().to_string();
    assert!(err.contains("both edges of node 0 read state 0"), "{err}");

    let partial =
        published::DARTS_V2.replacen("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]", 1);
    let err = space.parse(&partial).unwrap_err().to_string();
    assert!(err.contains("normal_concat is [4, 5]"), "{err}");

    let two = DartsCellSpace::new(2).unwrap();
    let err = two.parse(published::DARTS_V2).unwrap_err().to_string();
    assert!(
        err.contains("the cells have 4 intermediate nodes; this space has 2"),
        "{err}"
    );

    let err = space.parse("Genotype(normal=[").unwrap_err().to_string();
    assert!(err.contains("genotype architecture"), "{err}");
    assert!(DartsCellSpace::new(0).is_err());
}

#[test]
fn choices_files_in_json_and_toml_load_the_same_space() {
    let dir = temp_dir("choices-equal");
    let json = dir.join("space.json");
    let toml = dir.join("space.toml");
    std::fs::write(
        &json,
        r#"{"depth": [2, 3, 4], "op": ["conv3x3", "conv5x5"], "ratio": [0.5, 1.0]}"#,
    )
    .unwrap();
    std::fs::write(
        &toml,
        "depth = [2, 3, 4]\nop = [\"conv3x3\", \"conv5x5\"]\nratio = [0.5, 1.0]\n",
    )
    .unwrap();
    let a = ChoiceSpace::load(&json).unwrap();
    let b = ChoiceSpace::load(&toml).unwrap();
    assert_eq!(a, b);
    let names: Vec<&str> = a.genes().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["depth", "op", "ratio"]);
    assert_eq!(a.genes()[2].options, ["0.5", "1.0"]);
    assert_eq!(a.key(&[1, 1, 0]), "depth=3,op=conv5x5,ratio=0.5");
    assert_eq!(
        a.parse("depth=3,op=conv5x5,ratio=0.5").unwrap(),
        vec![1, 1, 0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn choices_file_errors_name_the_file_and_the_choice() {
    let dir = temp_dir("choices-errors");
    let cases: [(&str, &str, &str); 12] = [
        (
            "empty.json",
            r#"{"depth": []}"#,
            "choice `depth`: the list of options is empty",
        ),
        (
            "dup.json",
            r#"{"op": ["a", "b", "a"]}"#,
            "choice `op`: option `a` appears twice",
        ),
        (
            "dup.toml",
            "depth = [2, 3, 2]\n",
            "choice `depth`: option `2` appears twice",
        ),
        (
            "nested.json",
            r#"{"op": ["a", ["b"]]}"#,
            "choice `op`, option 1: expected a string",
        ),
        (
            "nested.toml",
            "op = [\"a\", { x = 1 }]\n",
            "choice `op`, option 1: expected a string",
        ),
        (
            "null.json",
            r#"{"op": [null]}"#,
            "choice `op`, option 0: expected a string, a number or a boolean, found null",
        ),
        (
            "scalar.json",
            r#"{"depth": 3}"#,
            "choice `depth`: expected a list of options",
        ),
        ("none.json", "{}", "no choices"),
        ("none.toml", "", "no choices"),
        ("list.json", "[1, 2]", "expected a table"),
        (
            "comma.json",
            r#"{"op": ["a,b"]}"#,
            "choice `op`, option 0: `a,b` contains `,` or `=`",
        ),
        (
            "twice.json",
            r#"{"op": ["a"], "op": ["b"]}"#,
            "choice `op` appears twice",
        ),
    ];
    for (file, content, expected) in cases {
        let path = dir.join(file);
        std::fs::write(&path, content).unwrap();
        let err = ChoiceSpace::load(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{file}: {err}");
        assert!(err.contains(expected), "{file}: {err}");
    }

    let path = dir.join("space.yaml");
    std::fs::write(&path, "depth: [2]\n").unwrap();
    let err = ChoiceSpace::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("space.yaml") && err.contains("unknown extension (`.yaml`)"),
        "{err}"
    );

    let path = dir.join("broken.toml");
    std::fs::write(&path, "depth = [2, \n").unwrap();
    let err = ChoiceSpace::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("broken.toml") && err.contains("not valid TOML"),
        "{err}"
    );

    let missing = dir.join("missing.json");
    let err = ChoiceSpace::load(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn user_tables_look_up_canonical_keys() {
    let dir = temp_dir("user-table");
    let space = example_choices();
    let path = dir.join("results.csv");
    // Keys of a choices space hold commas, so they are quoted; the second row writes its
    // choices in the other order, which parses to the same architecture.
    std::fs::write(
        &path,
        "arch,valid_accuracy,latency_ms\n\"depth=2,op=conv3x3\",81.5,3.25\n\
         \"op=conv5x5, depth=4\",84.0,7.5\n",
    )
    .unwrap();
    let table = TableEstimator::from_csv(&path, &space, &TableOptions::default()).unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(table.metrics(), ["valid_accuracy", "latency_ms"]);
    assert_eq!(
        table.selection_metric(),
        ("valid_accuracy".to_string(), false)
    );
    let eval = table.evaluate(&space, &[2, 1], 3).unwrap();
    assert_eq!(eval.metric("valid_accuracy").unwrap(), 84.0);
    assert_eq!(eval.metric("latency_ms").unwrap(), 7.5);
    assert_eq!(table.index(&space, &[0, 0]), Some(0));
    assert_eq!(table.key_at(1), Some("depth=4,op=conv5x5"));

    let err = table.evaluate(&space, &[1, 0], 0).unwrap_err().to_string();
    assert!(err.contains("results.csv"), "{err}");
    assert!(
        err.contains("no row for architecture `depth=3,op=conv3x3`"),
        "{err}"
    );

    let err = table
        .evaluate(&Nb201Space::new(), &[0; 6], 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lists choices architectures, but the search space is nb201"),
        "{err}"
    );

    // Another key column and selection metric.
    let chain = ChainSpace::with_darts_ops(2).unwrap();
    let path = dir.join("chain.csv");
    std::fs::write(&path, "test_acc,cell\n91.5,sep_conv_3x3-skip_connect\n").unwrap();
    let options = TableOptions {
        key_column: "cell".into(),
        selection: Some("test_acc".into()),
    };
    let table = TableEstimator::from_csv(&path, &chain, &options).unwrap();
    assert_eq!(table.selection_metric(), ("test_acc".to_string(), true));
    let arch = chain.parse("sep_conv_3x3-skip_connect").unwrap();
    assert_eq!(
        table
            .evaluate(&chain, &arch, 0)
            .unwrap()
            .metric("test_acc")
            .unwrap(),
        91.5
    );
    let options = TableOptions {
        key_column: "cell".into(),
        selection: Some("accuracy".into()),
    };
    let err = TableEstimator::from_csv(&path, &chain, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no metric column `accuracy` (metrics: test_acc)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_tables_are_refused_with_line_and_column() {
    let dir = temp_dir("bad-tables");
    let space = example_choices();
    let cases = [
        (
            "nokey.csv",
            "name,acc\na,1\n",
            "no column `arch` in the header (columns: name, acc)",
        ),
        (
            "nometric.csv",
            "arch\n\"depth=2,op=conv3x3\"\n",
            "no metric columns",
        ),
        (
            "text.csv",
            "arch,acc\n\"depth=2,op=conv3x3\",1\n\"depth=3,op=conv3x3\",high\n",
            "line 3, column `acc`: `high` is not a finite number",
        ),
        (
            "nan.csv",
            "arch,acc\n\"depth=2,op=conv3x3\",NaN\n",
            "line 2, column `acc`: `NaN` is not a finite number",
        ),
        (
            "dup.csv",
            "arch,acc\n\"depth=2,op=conv3x3\",1\n\"depth=3,op=conv3x3\",2\n\"op=conv3x3,depth=2\",3\n",
            "line 4: architecture `depth=2,op=conv3x3` repeats data row 0 (line 2)",
        ),
        (
            "width.csv",
            "arch,acc\n\"depth=2,op=conv3x3\",1,2\n",
            "line 2: expected 2 fields as in the header, found 3",
        ),
        (
            "badkey.csv",
            "arch,acc\n\"depth=9,op=conv3x3\",1\n",
            "line 2, column `arch`",
        ),
        (
            "quote.csv",
            "arch,acc\n\"depth=2,op=conv3x3,1\n",
            "line 2: field 1 opens a quote",
        ),
        ("empty.csv", "\n\n", "the file is empty"),
        ("header.csv", "arch,acc,acc\n", "column `acc` appears twice"),
    ];
    for (file, content, expected) in cases {
        let path = dir.join(file);
        std::fs::write(&path, content).unwrap();
        let err = TableEstimator::from_csv(&path, &space, &TableOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{file}: {err}");
        assert!(err.contains(expected), "{file}: {err}");
    }
    let err = TableEstimator::from_csv(&dir.join("absent.csv"), &space, &TableOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.csv"), "{err}");

    // NAS-Bench-201 files: a truncated copy, a missing column, a non-standard cell string.
    let header = "CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,\
                  ImageNetTestAccuracy200Epochs,ArchitectureString,UniqueString\n";
    let row = "90.0,70.0,40.0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,x\n";
    let path = dir.join("short.csv");
    std::fs::write(&path, format!("{header}{row}")).unwrap();
    let err = TableEstimator::nb201(&path, Nb201Dataset::Cifar10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected 15625 data rows (one per NAS-Bench-201 cell), found 1"),
        "{err}"
    );
    let path = dir.join("nocolumn.csv");
    std::fs::write(&path, "ArchitectureString,CIFAR10TestAccuracy200Epochs\n").unwrap();
    let err = TableEstimator::nb201(&path, Nb201Dataset::Cifar100)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column `CIFAR100TestAccuracy200Epochs`"),
        "{err}"
    );

    if let Some(real) = nb201_csv() {
        let text = std::fs::read_to_string(&real).unwrap();
        let edit = |from: &str, to: &str| {
            let path = dir.join("edited.csv");
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
            TableEstimator::nb201(&path, Nb201Dataset::Cifar10)
                .unwrap_err()
                .to_string()
        };
        // Row 0 (line 2) starts with its CIFAR-10 accuracy.
        let err = edit("85.86333333333334,", "n/a,");
        assert!(
            err.contains("line 2, column `CIFAR10TestAccuracy200Epochs`: `n/a`"),
            "{err}"
        );
        let err = edit(
            "|avg_pool_3x3~0|+|nor_conv_1x1~0|",
            "|avg_pool_3x3~0| + |nor_conv_1x1~0|",
        );
        assert!(
            err.contains("line 2 (row 0), column `ArchitectureString`"),
            "{err}"
        );
        assert!(
            err.contains("node 1 (column 1): expected `|` at the end"),
            "{err}"
        );
        // Row 1's cell written into row 0: a repeat at line 3.
        let row1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
        let err = edit(
            "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
            row1,
        );
        assert!(
            err.contains("line 3: architecture") && err.contains("repeats data row 0 (line 2)"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
