//! Process metrics read from /proc at collection time (Linux; absent elsewhere):
//! `process.cpu.time` (s, by `cpu.mode` user | system), `process.memory.usage`
//! (resident bytes) and `process.open_file_descriptor.count`.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableCounter, ObservableGauge};

/// Clock ticks per second for /proc/self/stat times. Linux has reported
/// utime/stime in USER_HZ = 100 on every architecture for decades.
const USER_HZ: f64 = 100.0;

/// The observable process instruments (kept alive by [`crate::Metrics`]).
#[allow(dead_code)]
pub(crate) struct ProcessInstruments {
    cpu: ObservableCounter<f64>,
    rss: ObservableGauge<u64>,
    fds: ObservableGauge<u64>,
}

/// User and system CPU seconds of this process.
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu(&stat)
}

/// Parses utime and stime (fields 14 and 15) from a /proc/PID/stat line. The
/// command name (field 2) is in parentheses and may hold spaces, so fields are
/// counted after the last ')'.
fn parse_stat_cpu(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); utime is field 14 → index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime as f64 / USER_HZ, stime as f64 / USER_HZ))
}

/// Resident set size in bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_rss(&status)
}

fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

/// Number of open file descriptors.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

impl ProcessInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        ProcessInstruments {
            cpu: meter
                .f64_observable_counter("process.cpu.time")
                .with_unit("s")
                .with_description("CPU seconds used by the process, by cpu.mode (user | system)")
                .with_callback(|obs| {
                    if let Some((user, system)) = cpu_seconds() {
                        obs.observe(user, &[KeyValue::new("cpu.mode", "user")]);
                        obs.observe(system, &[KeyValue::new("cpu.mode", "system")]);
                    }
                })
                .build(),
            rss: meter
                .u64_observable_gauge("process.memory.usage")
                .with_unit("By")
                .with_description("Resident set size of the process")
                .with_callback(|obs| {
                    if let Some(b) = resident_bytes() {
                        obs.observe(b, &[]);
                    }
                })
                .build(),
            fds: meter
                .u64_observable_gauge("process.open_file_descriptor.count")
                .with_unit("{file_descriptor}")
                .with_description("Open file descriptors of the process")
                .with_callback(|obs| {
                    if let Some(n) = open_fds() {
                        obs.observe(n, &[]);
                    }
                })
                .build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_the_command() {
        let line =
            "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1 1 1";
        assert_eq!(parse_stat_cpu(line), Some((2.5, 0.75)));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert_eq!(parse_stat_cpu("1 (x) S 1 2"), None);
    }

    #[test]
    fn rss_in_kib() {
        let s = "Name:\tcandor\nVmRSS:\t  2048 kB\nThreads:\t4\n";
        assert_eq!(parse_status_rss(s), Some(2048 * 1024));
        assert_eq!(parse_status_rss("Name:\tx\n"), None);
        assert_eq!(parse_status_rss("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        assert!(cpu_seconds().is_some());
        assert!(resident_bytes().unwrap() > 0);
        assert!(open_fds().unwrap() >= 3);
    }
}
