//! A node's Prometheus metrics: the counters the runtime and the HTTP
//! handlers keep besides the protocol's own ([`ringcast_proto::stats`]), and
//! the text exposition of `GET /metrics` (Prometheus text format 0.0.4).
//!
//! Conventions: every name starts with `ringcast_`, carries its unit
//! (`_seconds`, `_bytes`), counters end in `_total`, and the things that are
//! counted by kind or reason carry that as a label (`kind`, `channel`,
//! `reason`, `outcome`, `code`, `route`, `disk`). Label sets that are known in
//! advance (message kinds, rejection reasons, placement outcomes) are always
//! exposed, zeros included, so `rate()` works from the first scrape.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringcast_proto::message::MessageKind;
use ringcast_proto::stats::{Histogram, REJECT_REASONS};
use ringcast_proto::{MemberStatus, Role};

use crate::host::counters::{PLACEMENT_OUTCOMES, UNAVAILABLE_ROUTES};
use crate::host::shared::{Shared, Snapshot};

/// Builds an exposition: each family once, with its HELP and TYPE first.
struct Exposition {
    out: String,
}

/// A label value, escaped as the text format wants.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// One family with a single unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The samples of one histogram (the family is written by the caller).
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        for (bound, n) in h.cumulative() {
            let le = format_seconds(bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, n);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.count());
        self.sample(&format!("{name}_sum"), labels, h.sum().as_secs_f64());
        self.sample(&format!("{name}_count"), labels, h.count());
    }
}

/// A bucket bound in seconds, as short as it is exact (`0.005`, `2.5`, `60`).
fn format_seconds(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The name of a role, as the API and metrics show it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Listening => "listening",
        Role::Member => "member",
        Role::Supervisor => "supervisor",
        Role::Left => "left",
    }
}

/// The Prometheus text exposition of a node: protocol counters from `snap`,
/// socket, streaming and placement counters from `shared`.
pub fn render(shared: &Shared, snap: &Snapshot) -> String {
    let mut e = Exposition { out: String::new() };
    let s = &snap.stats;

    e.family(
        "ringcast_build_info",
        "gauge",
        "Always 1; the version of ringcast this node runs.",
    );
    e.sample(
        "ringcast_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    let traffic = [
        (
            "ringcast_messages_sent_total",
            "Datagrams sent, by channel (bus or ring) and message kind.",
            &s.sent,
            false,
        ),
        (
            "ringcast_sent_bytes_total",
            "Bytes sent (sealed frames), by channel and message kind.",
            &s.sent,
            true,
        ),
        (
            "ringcast_messages_received_total",
            "Datagrams received and accepted, by channel and message kind.",
            &s.received,
            false,
        ),
        (
            "ringcast_received_bytes_total",
            "Bytes received and accepted, by channel and message kind.",
            &s.received,
            true,
        ),
    ];
    for (name, help, table, bytes) in traffic {
        e.family(name, "counter", help);
        for kind in MessageKind::ALL {
            let t = table.get(&kind).copied().unwrap_or_default();
            let v = if bytes { t.bytes } else { t.datagrams };
            e.sample(
                name,
                &[("channel", kind.channel().name()), ("kind", kind.name())],
                v,
            );
        }
    }

    e.family(
        "ringcast_frames_rejected_total",
        "counter",
        "Datagrams dropped before or after authentication, by reason.",
    );
    let mut reasons: BTreeMap<&str, u64> = REJECT_REASONS.iter().map(|r| (*r, 0)).collect();
    for (r, n) in &s.rejected {
        reasons.insert(r, *n);
    }
    // Datagrams dropped unread by the per-sender limits.
    reasons.insert(
        "rate_limited",
        shared.io.rate_limited.load(Ordering::Relaxed),
    );
    for (r, n) in reasons {
        e.sample("ringcast_frames_rejected_total", &[("reason", r)], n);
    }

    e.single(
        "ringcast_supervisor_changes_total",
        "counter",
        "Times the supervisor this node follows changed.",
        s.supervisor_changes,
    );
    e.single(
        "ringcast_failure_declarations_total",
        "counter",
        "Failure declarations this node made about its upstream neighbour (claim 8).",
        s.failure_declarations,
    );
    e.family(
        "ringcast_failure_detection_seconds",
        "histogram",
        "Silence of the upstream neighbour when this node declared it failed.",
    );
    e.histogram("ringcast_failure_detection_seconds", &[], &s.detection);
    e.single(
        "ringcast_clock_slips_total",
        "counter",
        "Times this node's timers ran late (it was paused or starved).",
        s.clock_slips,
    );
    e.single(
        "ringcast_send_errors_total",
        "counter",
        "Datagrams the socket refused to send.",
        shared.io.send_errors.load(Ordering::Relaxed),
    );
    e.single(
        "ringcast_receive_errors_total",
        "counter",
        "Errors receiving datagrams.",
        shared.io.recv_errors.load(Ordering::Relaxed),
    );

    e.family(
        "ringcast_role",
        "gauge",
        "1 for the role this node plays now, 0 for the others.",
    );
    for role in [Role::Listening, Role::Member, Role::Supervisor, Role::Left] {
        e.sample(
            "ringcast_role",
            &[("role", role_name(role))],
            u8::from(role == snap.role),
        );
    }
    let map = snap.map.as_ref();
    e.single(
        "ringcast_epoch",
        "gauge",
        "Epoch of the supervisor this node follows.",
        map.map_or(0, |m| m.epoch.0),
    );
    e.family(
        "ringcast_cluster_nodes",
        "gauge",
        "Nodes of the cluster map this node holds, by status.",
    );
    for (status, name) in [
        (MemberStatus::Up, "up"),
        (MemberStatus::Failed, "failed"),
        (MemberStatus::Left, "left"),
    ] {
        let n = map.map_or(0, |m| {
            m.members.iter().filter(|x| x.status == status).count()
        });
        e.sample("ringcast_cluster_nodes", &[("status", name)], n);
    }

    let probes = shared.metrics.probes();
    e.family(
        "ringcast_disk_probe_duration_seconds",
        "histogram",
        "Time of one disk probe (write, sync, read back), by disk (claim 13).",
    );
    for (disk, (h, _)) in &probes {
        let d = disk.to_string();
        e.histogram("ringcast_disk_probe_duration_seconds", &[("disk", &d)], h);
    }
    e.family(
        "ringcast_disk_probe_failures_total",
        "counter",
        "Disk probes that failed or timed out, by disk.",
    );
    for (disk, (_, failures)) in &probes {
        let d = disk.to_string();
        e.sample(
            "ringcast_disk_probe_failures_total",
            &[("disk", &d)],
            failures,
        );
    }

    e.family(
        "ringcast_disk_reported_failed_total",
        "counter",
        "Times this node reported a disk failed: its probes failed DISK_FALL times in a row, by disk.",
    );
    let verdicts = shared.metrics.verdicts_failed();
    for disk in probes.keys() {
        let d = disk.to_string();
        let n = verdicts.get(disk).copied().unwrap_or(0);
        e.sample("ringcast_disk_reported_failed_total", &[("disk", &d)], n);
    }

    if let Some(streams) = shared.streams.get() {
        let st = streams.snapshot();
        e.single(
            "ringcast_streams_active",
            "gauge",
            "Stream responses whose body is being sent now.",
            st.active_streams,
        );
        e.single(
            "ringcast_stream_requests_total",
            "counter",
            "Requests answered on the data path (/v1/streams/), whatever the status.",
            st.requests,
        );
        e.single(
            "ringcast_served_bytes_total",
            "counter",
            "Body bytes of stream responses sent.",
            st.bytes_sent,
        );
        e.single(
            "ringcast_sendfile_bytes_total",
            "counter",
            "File bytes sent with sendfile(2), the zero-copy path.",
            st.sendfile_bytes,
        );
        e.family(
            "ringcast_disk_served_bytes_total",
            "counter",
            "File bytes served from each disk by this node.",
        );
        for (disk, d) in &st.disks {
            let id = disk.to_string();
            e.sample(
                "ringcast_disk_served_bytes_total",
                &[("disk", &id)],
                d.bytes_sent,
            );
        }
    }

    let m = &shared.metrics;
    e.family(
        "ringcast_placements_total",
        "counter",
        "Placement decisions this node took as supervisor, by outcome.",
    );
    let placements = m.placements();
    for outcome in PLACEMENT_OUTCOMES {
        let n = placements.get(outcome).copied().unwrap_or(0);
        e.sample("ringcast_placements_total", &[("outcome", outcome)], n);
    }
    e.family(
        "ringcast_address_moves_total",
        "counter",
        "Service addresses this node took (now serving them) and released.",
    );
    let moves = m.address_moves();
    for kind in crate::host::counters::ADDRESS_MOVES {
        let n = moves.get(kind).copied().unwrap_or(0);
        e.sample("ringcast_address_moves_total", &[("kind", kind)], n);
    }
    e.family(
        "ringcast_connections_taken_over_total",
        "counter",
        "Connections in flight on a service address this node took from a dead holder, by outcome.",
    );
    let takeovers = m.takeovers();
    for outcome in crate::host::counters::TAKEOVERS {
        let n = takeovers.get(outcome).copied().unwrap_or(0);
        e.sample(
            "ringcast_connections_taken_over_total",
            &[("outcome", outcome)],
            n,
        );
    }
    e.family(
        "ringcast_play_responses_total",
        "counter",
        "Answers to play requests (/v1/play/) at this node, by status code.",
    );
    let mut play = m.play();
    for code in [307, 404, 503] {
        play.entry(code).or_default();
    }
    for (code, n) in play {
        let c = code.to_string();
        e.sample("ringcast_play_responses_total", &[("code", &c)], n);
    }
    e.family(
        "ringcast_unavailable_responses_total",
        "counter",
        "503 answers (no capacity, no healthy replica, no supervisor, unreadable disk), by route.",
    );
    let unavailable = m.unavailable();
    for route in UNAVAILABLE_ROUTES {
        let n = unavailable.get(route).copied().unwrap_or(0);
        e.sample(
            "ringcast_unavailable_responses_total",
            &[("route", route)],
            n,
        );
    }
    e.single(
        "ringcast_streams_reassigned_total",
        "counter",
        "Streams this node moved to other nodes as supervisor after a node, disk or path failed.",
        m.reassigned(),
    );
    e.single(
        "ringcast_event_subscribers",
        "gauge",
        "Clients following this node's event stream now.",
        shared.events.receiver_count(),
    );
    if let Some(guard) = shared.http_guard.get() {
        e.family(
            "ringcast_http_refused_total",
            "counter",
            "HTTP connections and requests refused, by reason.",
        );
        for (reason, n) in guard.refusals() {
            e.sample("ringcast_http_refused_total", &[("reason", reason)], n);
        }
        e.single(
            "ringcast_http_connections",
            "gauge",
            "HTTP connections open now.",
            guard.open_connections(),
        );
    }
    e.single(
        "ringcast_config_version",
        "gauge",
        "The configuration version this node runs.",
        snap.config_version,
    );
    e.family(
        "ringcast_cluster_key",
        "gauge",
        "1 for each cluster key the node accepts; use=\"seal\" for the one it seals with.",
    );
    for (i, key) in snap.keys.iter().enumerate() {
        let usage = if i == 0 { "seal" } else { "accept" };
        let id = key.0.to_string();
        e.sample("ringcast_cluster_key", &[("id", &id), ("use", usage)], 1);
    }
    e.family(
        "ringcast_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP or a newer version seen), by result.",
    );
    for (result, n) in [
        ("applied", &shared.reloads.applied),
        ("unchanged", &shared.reloads.unchanged),
        ("failed", &shared.reloads.failed),
    ] {
        e.sample(
            "ringcast_config_reloads_total",
            &[("result", result)],
            n.load(Ordering::Relaxed),
        );
    }
    e.single(
        "ringcast_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        format!("{:.3}", shared.started.elapsed().as_secs_f64()),
    );
    e.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_written_short_and_exact() {
        assert_eq!(format_seconds(Duration::from_millis(5)), "0.005");
        assert_eq!(format_seconds(Duration::from_millis(2500)), "2.5");
        assert_eq!(format_seconds(Duration::from_secs(60)), "60");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_histogram_is_written_with_cumulative_buckets_sum_and_count() {
        let mut e = Exposition { out: String::new() };
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_millis(70));
        e.histogram("x_seconds", &[("disk", "3")], &h);
        let lines: Vec<&str> = e.out.lines().collect();
        assert!(lines.contains(&"x_seconds_bucket{disk=\"3\",le=\"0.025\"} 0"));
        assert!(lines.contains(&"x_seconds_bucket{disk=\"3\",le=\"0.05\"} 1"));
        assert!(lines.contains(&"x_seconds_bucket{disk=\"3\",le=\"0.1\"} 2"));
        assert!(lines.contains(&"x_seconds_bucket{disk=\"3\",le=\"+Inf\"} 2"));
        assert!(lines.contains(&"x_seconds_count{disk=\"3\"} 2"));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("x_seconds_sum{disk=\"3\"} 0.1")));
    }
}
