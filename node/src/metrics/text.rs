//! Prometheus text exposition format 0.0.4, written by hand (it is a few lines of rules).
//!
//! Each family is introduced by its `# HELP` and `# TYPE` lines, then its samples. HELP text
//! escapes backslash and newline; label values escape backslash, double quote and newline.
//! A histogram's buckets are cumulative, end with `le="+Inf"` (equal to `_count`), and are
//! followed by `_sum` and `_count`.

use std::fmt::Write as _;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A histogram's state as read: per-bucket (not cumulative) counts for each upper bound,
/// the count above the last bound, and the sum of the observed values.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValues<'a> {
    pub bounds: &'a [f64],
    pub bucket_counts: Vec<u64>,
    pub overflow: u64,
    pub sum: f64,
}

/// Builds one exposition text.
#[derive(Debug, Default)]
pub struct TextWriter {
    out: String,
}

impl TextWriter {
    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.line(name, "", labels, None, value.into());
    }

    /// A histogram's samples: cumulative buckets, `+Inf`, `_sum`, `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], values: &HistogramValues) {
        let mut cumulative = 0u64;
        for (bound, count) in values.bounds.iter().zip(&values.bucket_counts) {
            cumulative += count;
            let le = format_float(*bound);
            self.line(name, "_bucket", labels, Some(&le), Value::Int(cumulative));
        }
        cumulative += values.overflow;
        self.line(
            name,
            "_bucket",
            labels,
            Some("+Inf"),
            Value::Int(cumulative),
        );
        self.line(name, "_sum", labels, None, Value::Float(values.sum));
        self.line(name, "_count", labels, None, Value::Int(cumulative));
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: Value,
    ) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        let extra = le.map(|le| ("le", le));
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (index, (label, value)) in all.enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value_into(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(value) => {
                let _ = write!(self.out, "{value}");
            }
            Value::Signed(value) => {
                let _ = write!(self.out, "{value}");
            }
            Value::Float(value) => self.out.push_str(&format_float(value)),
        }
        self.out.push('\n');
    }
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Signed(i64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::Int(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Signed(value)
    }
}

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Value::Int(u64::try_from(value).unwrap_or(u64::MAX))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}

/// A float as the format spells it (`+Inf`, `-Inf`, `NaN`, else Rust's shortest form).
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value_into(out: &mut String, value: &str) {
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut writer = TextWriter::default();
        writer.family(
            "myelin_x_total",
            "Help with \\ and\nnewline.",
            Kind::Counter,
        );
        writer.sample("myelin_x_total", &[("topic", "a\\b\"c\nd")], 3u64);
        writer.sample("myelin_x_total", &[], 4u64);
        assert_eq!(
            writer.finish(),
            "# HELP myelin_x_total Help with \\\\ and\\nnewline.\n\
             # TYPE myelin_x_total counter\n\
             myelin_x_total{topic=\"a\\\\b\\\"c\\nd\"} 3\n\
             myelin_x_total 4\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_sum_and_count() {
        let mut writer = TextWriter::default();
        writer.family("myelin_h_seconds", "A histogram.", Kind::Histogram);
        let values = HistogramValues {
            bounds: &[0.005, 0.5, 1.0],
            bucket_counts: vec![2, 0, 3],
            overflow: 1,
            sum: 4.25,
        };
        writer.histogram("myelin_h_seconds", &[("api", "Produce")], &values);
        assert_eq!(
            writer.finish(),
            "# HELP myelin_h_seconds A histogram.\n\
             # TYPE myelin_h_seconds histogram\n\
             myelin_h_seconds_bucket{api=\"Produce\",le=\"0.005\"} 2\n\
             myelin_h_seconds_bucket{api=\"Produce\",le=\"0.5\"} 2\n\
             myelin_h_seconds_bucket{api=\"Produce\",le=\"1\"} 5\n\
             myelin_h_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 6\n\
             myelin_h_seconds_sum{api=\"Produce\"} 4.25\n\
             myelin_h_seconds_count{api=\"Produce\"} 6\n"
        );
    }

    #[test]
    fn floats_use_the_formats_spellings() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(1e-6), "0.000001");
    }
}
