//! Draws `scripts/perf.sh`'s results as one SVG bar chart: for every
//! measured quantity, wsedge's advantage over each peer (median of the
//! rounds; wsedge / peer for rates, peer / wsedge for latencies, so above
//! 1 always means wsedge is better), on a log scale.
//!
//! Usage: perf-chart [target/perf/raw.jsonl] [target/perf/chart.svg]

use std::collections::BTreeMap;

use plotters::prelude::*;
use serde_json::Value;

/// Peers in drawing order, with their bar colours.
const PEERS: [(&str, RGBColor); 3] = [
    ("tokio-tungstenite", RGBColor(0x4c, 0x72, 0xb0)),
    ("fastwebsockets", RGBColor(0xdd, 0x84, 0x52)),
    ("uWebSockets", RGBColor(0x55, 0xa8, 0x68)),
];

/// A quantity drawn: its label, the scenario prefix it comes from, how to
/// read it from a result, and whether higher is better.
struct Metric {
    label: &'static str,
    scenario: &'static str,
    read: fn(&Value) -> Option<f64>,
    higher_is_better: bool,
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

const METRICS: [Metric; 10] = [
    Metric {
        label: "echo 32 B msgs/s",
        scenario: "echo-throughput 32 B",
        read: |r| f(r, &["msgs_per_sec"]),
        higher_is_better: true,
    },
    Metric {
        label: "echo 32 B per CPU-s",
        scenario: "echo-throughput 32 B",
        read: |r| f(r, &["msgs_per_server_cpu_sec"]),
        higher_is_better: true,
    },
    Metric {
        label: "echo 16 KiB msgs/s",
        scenario: "echo-throughput 16 KiB",
        read: |r| f(r, &["msgs_per_sec"]),
        higher_is_better: true,
    },
    Metric {
        label: "echo 16 KiB per CPU-s",
        scenario: "echo-throughput 16 KiB",
        read: |r| f(r, &["msgs_per_server_cpu_sec"]),
        higher_is_better: true,
    },
    Metric {
        label: "latency p50",
        scenario: "echo-latency",
        read: |r| f(r, &["latency_us", "p50"]),
        higher_is_better: false,
    },
    Metric {
        label: "latency p99",
        scenario: "echo-latency",
        read: |r| f(r, &["latency_us", "p99"]),
        higher_is_better: false,
    },
    Metric {
        label: "handshakes/s",
        scenario: "connect-rate",
        read: |r| f(r, &["handshakes_per_sec"]),
        higher_is_better: true,
    },
    Metric {
        label: "memory / idle conn",
        scenario: "idle",
        read: |r| f(r, &["bytes_per_connection"]),
        higher_is_better: false,
    },
    Metric {
        label: "fanout per CPU-s",
        scenario: "fanout",
        read: |r| f(r, &["deliveries_per_server_cpu_sec"]),
        higher_is_better: true,
    },
    Metric {
        label: "fanout p99",
        scenario: "fanout",
        read: |r| f(r, &["delivery_us", "p99"]),
        higher_is_better: false,
    },
];

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().unwrap_or("target/perf/raw.jsonl".into());
    let output = args.next().unwrap_or("target/perf/chart.svg".into());
    let rows: Vec<Value> = std::fs::read_to_string(&input)?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    // (metric, server) → median.
    let mut med: BTreeMap<(usize, String), f64> = BTreeMap::new();
    for (mi, m) in METRICS.iter().enumerate() {
        let mut vals: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &rows {
            let (Some(s), Some(server)) = (r["scenario"].as_str(), r["server"].as_str()) else {
                continue;
            };
            if !s.starts_with(m.scenario) {
                continue;
            }
            if let Some(v) = (m.read)(&r["result"]).filter(|v| *v > 0.0) {
                vals.entry(server.to_string()).or_default().push(v);
            }
        }
        for (server, v) in vals {
            if let Some(x) = median(v) {
                med.insert((mi, server), x);
            }
        }
    }
    let peers: Vec<(&str, RGBColor)> = PEERS
        .iter()
        .copied()
        .filter(|(p, _)| med.keys().any(|(_, s)| s == p))
        .collect();
    // wsedge's advantage per (metric, peer).
    let mut bars: Vec<(usize, usize, f64)> = Vec::new();
    for (mi, m) in METRICS.iter().enumerate() {
        let Some(&w) = med.get(&(mi, "wsedge".to_string())) else {
            continue;
        };
        for (pi, (p, _)) in peers.iter().enumerate() {
            if let Some(&v) = med.get(&(mi, p.to_string())) {
                let adv = if m.higher_is_better { w / v } else { v / w };
                bars.push((mi, pi, adv));
            }
        }
    }
    let lo = bars.iter().map(|b| b.2).fold(1.0f64, f64::min).min(0.5) / 1.5;
    let hi = bars.iter().map(|b| b.2).fold(1.0f64, f64::max).max(2.0) * 3.0;

    let slots = peers.len() + 1; // one gap per group
    let n = (METRICS.len() * slots) as u32;
    let root = SVGBackend::new(&output, (1200, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "wsedge vs peers, one server core: wsedge's advantage (× , log scale; above 1 = wsedge better)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0u32..n).into_segmented(), (lo..hi).log_scale())?;
    let label_at = |x: u32| -> String {
        let (g, s) = ((x as usize) / slots, (x as usize) % slots);
        if s == peers.len() / 2 {
            METRICS
                .get(g)
                .map_or(String::new(), |m| m.label.to_string())
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n as usize)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(x) => label_at(*x),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 11))
        .disable_y_mesh()
        .y_labels(0)
        .y_desc("wsedge advantage (×), log scale")
        .draw()?;
    // Ticks at powers of two, the parity line (1×) darker.
    let ticks = (-6..=6)
        .map(|e| 2f64.powi(e))
        .filter(|t| (lo..hi).contains(t));
    for t in ticks {
        let style = if t == 1.0 {
            BLACK.stroke_width(2)
        } else {
            BLACK.mix(0.15).stroke_width(1)
        };
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), t), (SegmentValue::Exact(n), t)],
            style,
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{t}×"),
            (SegmentValue::Exact(0), t),
            ("sans-serif", 11),
        )))?;
    }
    for (pi, (name, colour)) in peers.iter().enumerate() {
        let series = bars.iter().filter(|b| b.1 == pi).map(|&(mi, _, adv)| {
            let x = (mi * slots + pi) as u32;
            Rectangle::new(
                [
                    (SegmentValue::Exact(x), 1.0),
                    (SegmentValue::Exact(x + 1), adv),
                ],
                colour.filled(),
            )
        });
        chart
            .draw_series(series)?
            .label(format!("vs {name}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        // The value above (or below) each bar.
        chart.draw_series(bars.iter().filter(|b| b.1 == pi).map(|&(mi, _, adv)| {
            let x = (mi * slots + pi) as u32;
            let y = if adv >= 1.0 { adv * 1.08 } else { adv / 1.02 };
            Text::new(
                format!("{adv:.2}"),
                (SegmentValue::Exact(x), y),
                ("sans-serif", 9),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    eprintln!("wrote {output}");
    Ok(())
}
