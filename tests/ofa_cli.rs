//! `nas ofa` run as a user runs it, on the built-in digits with elastic resolution (sides 6
//! and 8): a finished run resumed with other budgets and more predictor samples searches again
//! without training, measures only the added subnets and replaces the earlier search's files;
//! resumed with tables measured again it predicts every subnet's latency anew; a resume with
//! other training settings is refused and leaves the run as it was; duplicate budgets, a side
//! without a latency table and a budget no subnet fits are refused before any training.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the nas binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&read(path)).unwrap()
}

/// The `subnet-*.bpk` files of a run directory, sorted.
fn subnet_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("subnet-") && n.ends_with(".bpk"))
        .collect();
    names.sort();
    names
}

/// A latency table of the digits' space at `side` (a quick, rough one: 1 warm-up, 3 runs).
fn table(root: &Path, side: usize) -> PathBuf {
    let dir = root.join(format!("latency-{side}"));
    let side = side.to_string();
    let out = nas(&[
        "latency-table",
        "--in-channels",
        "1",
        "--classes",
        "10",
        "--image-size",
        &side,
        "--warmup",
        "1",
        "--repeats",
        "3",
        "--validate",
        "0",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    dir.join("latency_table.json")
}

#[test]
fn ofa_resumes_with_new_search_settings_and_refuses_other_training() {
    let root = std::env::temp_dir().join(format!("nasrs-ofa-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (t6, t8) = (table(&root, 6), table(&root, 8));
    let run = root.join("run");
    let ofa = |extra: &[&str]| {
        let mut args = vec![
            "ofa",
            "--subset",
            "400",
            "--threads",
            "1",
            "--epochs-scale",
            "0.25",
            "--calibration-batches",
            "2",
            "--population",
            "5",
            "--cycles",
            "20",
            "--output",
            run.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        nas(&args)
    };
    let tables = [
        "--latency-table",
        t6.to_str().unwrap(),
        "--latency-table",
        t8.to_str().unwrap(),
    ];
    let with_tables = |extra: &[&str]| {
        let mut args: Vec<&str> = vec!["--resolutions", "6,8"];
        args.extend_from_slice(&tables);
        args.extend_from_slice(extra);
        ofa(&args)
    };

    // Up front: a duplicate budget, and a side without a table.
    let out = with_tables(&["--budgets", "2,2.0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("given twice"), "{}", text(&out));
    let out = ofa(&[
        "--resolutions",
        "6,8",
        "--latency-table",
        t8.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no table for 6x6"), "{}", text(&out));
    let out = with_tables(&["--budgets", "0.0001"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no subnet fits"), "{}", text(&out));
    assert!(
        !run.join("epochs.jsonl").exists(),
        "trained before refusing the budget"
    );

    let out = with_tables(&["--budgets", "100", "--predictor-samples", "6"]);
    assert!(out.status.success(), "{}", text(&out));
    let epochs = read(&run.join("epochs.jsonl"));
    // The directory now holds a run: neither --resume nor --overwrite is refused.
    let out = with_tables(&["--budgets", "100", "--predictor-samples", "6"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("holds a run"), "{}", text(&out));
    let samples = read(&run.join("predictor_samples.jsonl"));
    assert_eq!(samples.lines().count(), 6);
    assert_eq!(subnet_files(&run), ["subnet-100ms.bpk"]);
    let result = json(&run.join("result.json"));
    assert_eq!(result["budgets"][0]["weights"], "subnet-100ms.bpk");
    let side = result["budgets"][0]["resolution"].as_u64().unwrap();
    assert!([6, 8].contains(&side), "{result}");

    // Other budgets and more samples: no training, 3 more measurements, a new search.
    let out = with_tables(&[
        "--budgets",
        "50,200",
        "--predictor-samples",
        "9",
        "--resume",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        read(&run.join("epochs.jsonl")),
        epochs,
        "training ran again"
    );
    let more = read(&run.join("predictor_samples.jsonl"));
    assert_eq!(more.lines().count(), 9);
    assert!(more.starts_with(&samples), "earlier measurements changed");
    assert_eq!(subnet_files(&run), ["subnet-200ms.bpk", "subnet-50ms.bpk"]);
    let config = json(&run.join("config.json"));
    assert_eq!(config["budgets_ms"], serde_json::json!([50.0, 200.0]));
    assert_eq!(config["predictor_samples"], 9);
    let budgets: Vec<f64> = json(&run.join("result.json"))["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["budget_ms"].as_f64().unwrap())
        .collect();
    assert_eq!(budgets, [50.0, 200.0]);

    // Tables measured again (here: every latency doubled, so every prediction doubles): the
    // subnets are not measured again, their predicted latencies are.
    let doubled = |path: &Path, name: &str| {
        let mut table = json(path);
        for entry in table["entries"].as_array_mut().unwrap() {
            for field in ["median_ms", "p10_ms", "p90_ms"] {
                entry[field] = serde_json::json!(entry[field].as_f64().unwrap() * 2.0);
            }
        }
        let copy = root.join(name);
        std::fs::write(&copy, table.to_string()).unwrap();
        copy
    };
    let (d6, d8) = (doubled(&t6, "t6x2.json"), doubled(&t8, "t8x2.json"));
    let field = |text: &str, name: &str| -> Vec<f64> {
        text.lines()
            .map(|l| {
                let m: serde_json::Value = serde_json::from_str(l).unwrap();
                m[name].as_f64().unwrap()
            })
            .collect()
    };
    let out = ofa(&[
        "--resolutions",
        "6,8",
        "--latency-table",
        d6.to_str().unwrap(),
        "--latency-table",
        d8.to_str().unwrap(),
        "--budgets",
        "100,400",
        "--predictor-samples",
        "9",
        "--resume",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let redone = read(&run.join("predictor_samples.jsonl"));
    assert_eq!(
        read(&run.join("epochs.jsonl")),
        epochs,
        "training ran again"
    );
    let (before, after) = (
        field(&more, "predicted_latency_ms"),
        field(&redone, "predicted_latency_ms"),
    );
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert!((a - 2.0 * b).abs() < 1e-9 * a, "{b} -> {a}");
    }
    assert_eq!(
        field(&redone, "seconds"),
        field(&more, "seconds"),
        "subnets were measured again"
    );
    assert_eq!(subnet_files(&run), ["subnet-100ms.bpk", "subnet-400ms.bpk"]);
    let config_text = read(&run.join("config.json"));

    // Other training settings: refused, and the run keeps its files. One side only is caught
    // by the checkpoint, as is another distillation weight with everything else the same.
    let out = ofa(&[
        "--resolutions",
        "8",
        "--latency-table",
        t8.to_str().unwrap(),
        "--budgets",
        "50,200",
        "--predictor-samples",
        "9",
        "--resume",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resolutions"), "{}", text(&out));
    let out = with_tables(&[
        "--kd-weight",
        "0.5",
        "--budgets",
        "50,200",
        "--predictor-samples",
        "9",
        "--resume",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("kd_weight"), "{}", text(&out));
    assert_eq!(read(&run.join("config.json")), config_text);
    assert!(run.join("result.json").exists());
    assert_eq!(subnet_files(&run), ["subnet-100ms.bpk", "subnet-400ms.bpk"]);
    std::fs::remove_dir_all(&root).ok();
}
