//! Latency histograms and how the reports show them: percentiles in
//! microseconds, as a JSON object or a summary line.
//!
//! Owns: the histogram bounds every mode records into, the quantiles a
//! report may show and their formats. Must not touch: what a mode records
//! or the rest of its report (each mode prints its own; the CPU fields are
//! `cpu`'s).

use hdrhistogram::Histogram;

/// A histogram of nanoseconds, 1 ns to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// A quantile a report shows: its JSON key, its label in the summary, and
/// the quantile itself.
pub struct Quantile(&'static str, &'static str, f64);

pub const P50: Quantile = Quantile("p50", "p50", 0.5);
pub const P90: Quantile = Quantile("p90", "p90", 0.9);
pub const P99: Quantile = Quantile("p99", "p99", 0.99);
pub const P999: Quantile = Quantile("p999", "p99.9", 0.999);

/// The value at quantile `q`, in microseconds.
fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// The largest value, in microseconds.
fn max_us(h: &Histogram<u64>) -> f64 {
    h.max() as f64 / 1000.0
}

/// `{"p50": …, …, "max": …}` in microseconds.
pub fn percentiles_json(h: &Histogram<u64>, qs: &[Quantile]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for q in qs {
        m.insert(q.0.into(), us(h, q.2).into());
    }
    m.insert("max".into(), max_us(h).into());
    m.into()
}

/// `p50 … µs  …  max … µs`, rounded to microseconds.
pub fn percentiles_text(h: &Histogram<u64>, qs: &[Quantile]) -> String {
    let mut parts: Vec<String> = qs
        .iter()
        .map(|q| format!("{} {:.0} µs", q.1, us(h, q.2)))
        .collect();
    parts.push(format!("max {:.0} µs", max_us(h)));
    parts.join("  ")
}
