//! What the command prints besides its results: status lines, spinners and
//! byte progress bars, logging, errors; and human sizes and times.

use std::error::Error;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// Prints status lines and spinners on standard error, unless quiet; or,
/// for `--json`, events as JSON lines instead.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    quiet: bool,
    json: bool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        Reporter { quiet, json: false }
    }

    /// Events only: text status lines, warnings and spinners give way to
    /// [`Reporter::event`] lines.
    pub fn json(self) -> Reporter {
        Reporter {
            quiet: true,
            json: true,
        }
    }

    /// Whether events are reported.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One status line on standard error.
    pub fn status(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// One `warning: ...` line on standard error (an event with `--json`).
    pub fn warn(&self, line: impl std::fmt::Display) {
        if self.json {
            self.event(
                "warning",
                serde_json::json!({ "message": line.to_string() }),
            );
        } else if !self.quiet {
            eprintln!("warning: {line}");
        }
    }

    /// With `--json`, one line on standard error: `{"event": NAME, ...}`
    /// with the fields of `fields` (an object) and `unix_ns`, the time it
    /// is written. Written whole with one call, so lines of concurrent
    /// writers do not interleave.
    pub fn event(&self, name: &str, fields: serde_json::Value) {
        use std::io::Write;
        if !self.json {
            return;
        }
        let mut obj = match fields {
            serde_json::Value::Object(f) => f,
            _ => serde_json::Map::new(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        obj.insert(
            "unix_ns".into(),
            u64::try_from(now).unwrap_or(u64::MAX).into(),
        );
        // `event` first, for people reading the lines.
        let rest = serde_json::Value::Object(obj).to_string();
        let mut line = format!("{{\"event\":{}", serde_json::Value::from(name));
        if rest.len() > 2 {
            line.push(',');
        }
        line.push_str(&rest[1..]);
        line.push('\n');
        // Nothing sensible to do if standard error is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// A spinner with `message` and the elapsed time while work goes on,
    /// only when standard error is a terminal; it becomes a byte progress
    /// bar once [`Meter::set_bytes`] is called.
    pub fn spinner(&self, message: impl Into<String>) -> Spinner {
        let bar = (!self.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(spinner_style());
            bar.set_message(message.into());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Spinner {
            meter: Meter { bar },
        }
    }
}

/// `{took}`: the elapsed time, in tenths of a second under a minute.
fn took_key(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = w.write_str(&elapsed(state.elapsed()));
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} ({took})")
        .map(|s| s.with_key("took", took_key))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} [{wide_bar}] {done_of} ({took})")
        .map(|s| {
            s.with_key("took", took_key)
                .with_key(
                    "done_of",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let total = state.len().unwrap_or(0);
                        let _ = w.write_str(&done_of(state.pos(), total));
                    },
                )
                .progress_chars("=> ")
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A spinner or byte progress bar on standard error (or nothing); cleared
/// when dropped.
#[derive(Debug)]
pub struct Spinner {
    meter: Meter,
}

impl Spinner {
    pub fn set_message(&self, message: impl Into<String>) {
        self.meter.set_message(message);
    }

    /// See [`Meter::set_bytes`].
    pub fn set_bytes(&self, done: u64, total: u64) {
        self.meter.set_bytes(done, total);
    }

    /// A handle on the same spinner for another thread (it does not clear
    /// it when dropped).
    pub fn meter(&self) -> Meter {
        self.meter.clone()
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.meter.bar {
            bar.finish_and_clear();
        }
    }
}

/// A handle on a [`Spinner`]: updates it, never clears it.
#[derive(Debug, Clone)]
pub struct Meter {
    bar: Option<ProgressBar>,
}

impl Meter {
    /// Whether anything is drawn (standard error is a terminal, not `-q`).
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }

    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
        }
    }

    /// Shows `done` of `total` bytes as a bar (the spinner turns into one
    /// the first time). `total` may be an estimate: the bar's length is
    /// never below `done`.
    pub fn set_bytes(&self, done: u64, total: u64) {
        let Some(bar) = &self.bar else { return };
        if bar.length().is_none() {
            bar.set_style(bar_style());
        }
        bar.set_length(bar_length(done, total));
        bar.set_position(done);
    }
}

/// The length of a byte bar at `done` of an estimated `total`.
fn bar_length(done: u64, total: u64) -> u64 {
    total.max(done).max(1)
}

/// `512.0 MiB of 1.0 GiB (50%)`.
pub fn done_of(done: u64, total: u64) -> String {
    let total = bar_length(done, total);
    let percent = u128::from(done) * 100 / u128::from(total);
    format!("{} of {} ({percent}%)", bytes(done), bytes(total))
}

/// Milliseconds with microsecond precision, for JSON.
pub fn millis(d: Duration) -> f64 {
    // Exact below 2^53 µs (285 years).
    #[allow(clippy::cast_precision_loss)]
    let us = d.as_micros() as f64;
    us / 1e3
}

/// `0.4 s`, `12.3 s`, then [`duration`] in whole seconds (`3 min 4 s`): a
/// running clock.
pub fn elapsed(d: Duration) -> String {
    if d.as_secs() < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        duration(Duration::from_secs(d.as_secs()))
    }
}

/// Sets up `tracing` output on standard error: errors only with `-q`,
/// warnings by default, then info, debug and trace with `-v`, `-vv`, `-vvv`.
/// `RUST_LOG` overrides.
pub fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .without_time()
        .try_init();
}

/// The error and its causes as one `error` event line (`--json`):
/// `message` is the error, `causes` its sources in order.
pub fn error_event(error: &dyn Error) -> serde_json::Value {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(s) = source {
        causes.push(serde_json::Value::from(s.to_string()));
        source = s.source();
    }
    serde_json::json!({ "message": error.to_string(), "causes": causes })
}

/// Writes `error` as `error: ...` and one `  caused by: ...` line per source;
/// the other lines of a multi-line message (lists of problems) are indented
/// under their first line.
pub fn format_error(error: &dyn Error) -> String {
    let mut out = String::new();
    push_indented(&mut out, "error: ", "  ", &error.to_string());
    let mut source = error.source();
    while let Some(s) = source {
        push_indented(&mut out, "  caused by: ", "    ", &s.to_string());
        source = s.source();
    }
    out
}

fn push_indented(out: &mut String, first: &str, rest: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        out.push_str(if i == 0 { first } else { rest });
        out.push_str(if i == 0 { line } else { line.trim_start() });
        out.push('\n');
    }
    if text.is_empty() {
        out.push_str(first.trim_end());
        out.push('\n');
    }
}

/// `1.5 KiB`, `23.0 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `850 µs`, `12.3 ms`, `1.52 s`, `3 min 4 s`.
pub fn duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 100_000 {
        format!("{:.1} ms", micros as f64 / 1_000.0)
    } else if micros < 1_000_000 {
        format!("{} ms", micros / 1_000)
    } else if d.as_secs() < 60 {
        format!("{:.2} s", d.as_secs_f64())
    } else if d.as_secs() < 3600 {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{} h {} min", d.as_secs() / 3600, d.as_secs() / 60 % 60)
    }
}

/// `2026-11-25 15:04:33 UTC` for nanoseconds since the Unix epoch.
pub fn utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `3 min ago`, `in 2 s` (clock skew), relative to now.
pub fn ago(unix_ns: u64) -> String {
    let then = UNIX_EPOCH + Duration::from_nanos(unix_ns);
    match SystemTime::now().duration_since(then) {
        Ok(d) if d.as_secs() < 60 => format!("{} s ago", d.as_secs()),
        Ok(d) => format!("{} ago", duration(Duration::from_secs(d.as_secs()))),
        Err(e) => format!("in {}", duration(e.duration())),
    }
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian;
/// H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(256 << 20), "256.0 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(duration(Duration::from_millis(456)), "456 ms");
        assert_eq!(duration(Duration::from_millis(1_520)), "1.52 s");
        assert_eq!(duration(Duration::from_secs(184)), "3 min 4 s");
    }

    #[test]
    fn progress_texts() {
        assert_eq!(done_of(0, 1 << 30), "0 B of 1.0 GiB (0%)");
        assert_eq!(done_of(512 << 20, 1 << 30), "512.0 MiB of 1.0 GiB (50%)");
        assert_eq!(done_of(1 << 30, 1 << 30), "1.0 GiB of 1.0 GiB (100%)");
        // An estimate that was too low: the total follows what is done.
        assert_eq!(done_of(3 << 30, 1 << 30), "3.0 GiB of 3.0 GiB (100%)");
        assert_eq!(done_of(0, 0), "0 B of 1 B (0%)");
        assert_eq!(done_of(u64::MAX, u64::MAX), "16.0 EiB of 16.0 EiB (100%)");
        assert_eq!(bar_length(10, 0), 10);
        assert_eq!(bar_length(10, 20), 20);
        assert_eq!(elapsed(Duration::from_millis(400)), "0.4 s");
        assert_eq!(elapsed(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(elapsed(Duration::from_millis(184_900)), "3 min 4 s");
    }

    #[test]
    fn nothing_is_drawn_when_quiet() {
        let s = Reporter::new(true).spinner("x");
        assert!(!s.meter().is_drawn());
        s.set_bytes(1, 2);
        s.set_message("y");
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            utc(1_795_619_073 * 1_000_000_000 + 5),
            "2026-11-25 15:04:33 UTC"
        );
    }

    #[test]
    fn error_chain() {
        let inner = std::io::Error::other("line one:\n  - two\n  - three");
        #[derive(Debug, thiserror::Error)]
        #[error("outer failed")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            format_error(&Outer(inner)),
            "error: outer failed\n  caused by: line one:\n    - two\n    - three\n"
        );
    }
}
