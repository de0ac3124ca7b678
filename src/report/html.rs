//! The HTML reports of `nas search` and `nas train`, with their charts also written as SVG files.

use std::fmt::Write as _;

use super::output::OutputDir;
use super::svg::{Series, heatmap, line_chart};
use crate::error::Result;
use crate::search::{DartsConfig, EpochRecord};
use crate::space::{DartsOp, Genotype};
use crate::train::{TrainConfig, TrainEpoch};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}\
         pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}\
         </style></head><body><h1>{t}</h1>\n{body}</body></html>\n",
        t = escape(title)
    )
}

/// Edge labels in the order of the architecture weight rows, named as in the cell graph:
/// `node 1 <- c_{k-1}` is the edge from the cell's second input into intermediate node 1.
fn edge_labels(nodes: usize) -> Vec<String> {
    let mut labels = Vec::new();
    for node in 0..nodes {
        for input in 0..node + 2 {
            let source = match input {
                0 => "c_{k-2}".to_string(),
                1 => "c_{k-1}".to_string(),
                i => format!("node {}", i - 2),
            };
            labels.push(format!("node {node} <- {source}"));
        }
    }
    labels
}

/// Writes `curves.svg`, `alpha_normal.svg`, `alpha_reduce.svg` and `report.html` for a search.
pub fn write_search_report(
    out: &OutputDir,
    config: &DartsConfig,
    records: &[EpochRecord],
    stopped_early: Option<&str>,
) -> Result<()> {
    let epoch = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        records.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let loss = line_chart(
        "Loss",
        "epoch",
        "cross-entropy",
        &[
            Series {
                name: "train (weights half)",
                points: epoch(|r| r.train_loss),
            },
            Series {
                name: "valid (arch half)",
                points: epoch(|r| r.valid_loss),
            },
        ],
    );
    let accuracy = line_chart(
        "Accuracy",
        "epoch",
        "accuracy",
        &[
            Series {
                name: "train (weights half)",
                points: epoch(|r| r.train_accuracy),
            },
            Series {
                name: "valid (arch half)",
                points: epoch(|r| r.valid_accuracy),
            },
        ],
    );
    let collapse = line_chart(
        "Parameter-free operations in the derived cells",
        "epoch",
        "count",
        &[
            Series {
                name: "normal",
                points: epoch(|r| r.parameter_free_normal as f64),
            },
            Series {
                name: "reduce",
                points: epoch(|r| r.parameter_free_reduce as f64),
            },
        ],
    );
    out.write_text("loss.svg", &loss)?;
    out.write_text("accuracy.svg", &accuracy)?;
    out.write_text("parameter_free.svg", &collapse)?;

    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p>First-order DARTS, seed {}, {} cells, {} channels, {} nodes, {} of {} epochs run, batch {}.</p>",
        config.seed,
        config.network.cells,
        config.network.channels,
        config.network.nodes,
        records.len(),
        config.epochs,
        config.batch_size
    );
    if let Some(reason) = stopped_early {
        let _ = writeln!(body, "<p><b>Stopped early:</b> {}.</p>", escape(reason));
    }
    let _ = writeln!(body, "{loss}{accuracy}{collapse}");
    if let Some(last) = records.last() {
        let names: Vec<&str> = DartsOp::ALL.iter().map(|op| op.name()).collect();
        let labels = edge_labels(config.network.nodes);
        let normal = heatmap(
            "softmax(alpha), normal cell",
            &labels,
            &names,
            &last.alpha_normal,
            &[0],
        );
        let reduce = heatmap(
            "softmax(alpha), reduction cell",
            &labels,
            &names,
            &last.alpha_reduce,
            &[0],
        );
        out.write_text("alpha_normal.svg", &normal)?;
        out.write_text("alpha_reduce.svg", &reduce)?;
        let _ = writeln!(
            body,
            "<h2>Final genotype</h2><pre>{}</pre><pre>{}</pre>",
            escape(&last.genotype_text),
            escape(&last.genotype.render())
        );
        let _ = writeln!(
            body,
            "<h2>Architecture weights after epoch {}</h2>{normal}{reduce}",
            last.epoch
        );
    }
    let _ = writeln!(
        body,
        "<h2>Epochs</h2><table><tr><th>epoch</th><th>lr</th><th>train loss</th><th>train acc</th>\
         <th>valid loss</th><th>valid acc</th><th>param-free (normal)</th><th>s</th><th>img/s</th></tr>"
    );
    for r in records {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{:.5}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
             <td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.valid_loss,
            r.valid_accuracy,
            r.parameter_free_normal,
            r.seconds,
            r.images_per_second
        );
    }
    body.push_str("</table>\n");
    out.write_text("report.html", &page("DARTS search", &body))?;
    Ok(())
}

/// Writes `curves.svg` and `report.html` for a training run.
pub fn write_train_report(
    out: &OutputDir,
    config: &TrainConfig,
    genotype: &Genotype,
    epochs: &[TrainEpoch],
    parameters: usize,
) -> Result<()> {
    let series = |f: fn(&TrainEpoch) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let accuracy = line_chart(
        "Accuracy",
        "epoch",
        "accuracy",
        &[
            Series {
                name: "train",
                points: series(|r| r.train_accuracy),
            },
            Series {
                name: "test",
                points: series(|r| r.test_accuracy),
            },
        ],
    );
    let loss = line_chart(
        "Loss",
        "epoch",
        "cross-entropy",
        &[
            Series {
                name: "train",
                points: series(|r| r.train_loss),
            },
            Series {
                name: "test",
                points: series(|r| r.test_loss),
            },
        ],
    );
    out.write_text("accuracy.svg", &accuracy)?;
    out.write_text("loss.svg", &loss)?;
    let mut body = String::new();
    let final_acc = epochs.last().map(|r| r.test_accuracy).unwrap_or(0.0);
    let _ = writeln!(
        body,
        "<p>Test accuracy <b>{:.2}%</b> after {} epochs; {} cells, {} channels, {} parameters, \
         seed {}, drop path {}, auxiliary head {}.</p>",
        100.0 * final_acc,
        epochs.len(),
        config.network.cells,
        config.network.channels,
        parameters,
        config.seed,
        config.drop_path,
        config.network.auxiliary
    );
    let _ = writeln!(body, "{accuracy}{loss}");
    let _ = writeln!(
        body,
        "<h2>Genotype</h2><pre>{}</pre><pre>{}</pre>",
        escape(&genotype.to_darts_text()),
        escape(&genotype.render())
    );
    out.write_text("report.html", &page("Training a genotype", &body))?;
    Ok(())
}
