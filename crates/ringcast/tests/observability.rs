//! What operators read, from real node processes: `/metrics` as Prometheus
//! parses it (`promtool check metrics`, and the conventions checked here),
//! with values that follow what happened; and logs as JSON lines.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{is_root, isolate_network, Cluster, Spec};

/// `promtool`, from Debian's `prometheus` package, or a failure that says
/// how to get it: a metrics test that passes without checking proves nothing.
fn promtool() -> std::path::PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join("promtool");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "promtool is missing: it comes with Debian's prometheus package; run \
         scripts/install-test-deps {}",
        if is_root() {
            "(it installs it)"
        } else {
            "as root, or apt-get install prometheus"
        }
    );
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A series' labels other than `le`, in order.
type Labels = Vec<(String, String)>;

/// One parsed sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict reader of the text format as the node writes it: families with
/// HELP and TYPE before their samples, and each sample's labels.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.trim().is_empty(), "{name} has an empty HELP");
            assert!(helped.insert(name.to_string()), "{name} has two HELP lines");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(helped.contains(name), "{name}: TYPE before HELP");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} has two TYPE lines"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "odd line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label=value");
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
            map.insert(k.to_string(), v.expect("quoted label value").to_string());
        }
        samples.push((name.to_string(), map, value));
    }
    (types, samples)
}

fn family_of<'a>(types: &'a BTreeMap<String, String>, sample: &str) -> Option<(&'a str, &'a str)> {
    if let Some((n, k)) = types.get_key_value(sample) {
        return Some((n, k));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if let Some((n, k)) = types.get_key_value(base) {
                if k == "histogram" {
                    return Some((n, k));
                }
            }
        }
    }
    None
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

#[test]
fn metrics_of_a_running_node_pass_promtool_and_count_what_happened() {
    isolate_network();
    promtool();
    let mut spec = Spec::new(3);
    spec.disks = vec![(1, vec![1, 3]), (2, vec![3])];
    let mut c = Cluster::start(&spec);
    c.wait_agree(1, &[1, 2, 3]);
    c.put_title(1, "movie.mp4", &vec![7u8; 100_000]);
    // One placement and one stream served; one title nobody has.
    c.wait("movie.mp4 is placed", |c| c.place(3, "movie.mp4").is_ok());
    let location = c.place(3, "movie.mp4").unwrap();
    let served = c.agent.get(&location).call().unwrap();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut served.into_reader(), &mut body).unwrap();
    assert_eq!(body.len(), 100_000);
    assert_eq!(c.place(3, "nothing.mp4"), Err(404));
    // n3 watches n2 on the ring: it declares it and measures the silence.
    c.kill(2);
    c.wait_agree(1, &[1, 3]);
    c.wait("n3 probed its disks a few times", |c| {
        c.metrics(3).lines().any(|l| {
            l.starts_with("ringcast_disk_probe_duration_seconds_count{disk=\"2\"} ")
                && !l.ends_with(" 0")
        })
    });

    for id in [1, 3] {
        let text = c.metrics(id);
        let (ok, said) = promtool_check(&text);
        assert!(
            ok && said.trim().is_empty(),
            "promtool on n{id}: {said}\n{text}"
        );

        let (types, samples) = parse(&text);
        for (name, labels, v) in &samples {
            let (family, kind) =
                family_of(&types, name).unwrap_or_else(|| panic!("{name} has no TYPE of its own"));
            assert!(name.starts_with("ringcast_"), "{name}");
            match kind {
                "counter" => {
                    assert!(
                        family.ends_with("_total"),
                        "counter {family} ends in _total"
                    );
                    assert!(*v >= 0.0 && v.fract() == 0.0, "{name} {v}");
                }
                "histogram" => {
                    assert!(family.ends_with("_seconds"), "{family} has its unit");
                    if name.ends_with("_bucket") {
                        assert!(labels.contains_key("le"), "{name} has le");
                    }
                }
                "gauge" => assert!(!family.ends_with("_total"), "gauge {family}"),
                other => panic!("{family}: unexpected type {other}"),
            }
        }
        // Histograms: buckets rise and end at +Inf = _count.
        for (family, kind) in &types {
            if kind != "histogram" {
                continue;
            }
            let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for (name, labels, v) in &samples {
                if *name != format!("{family}_bucket") {
                    continue;
                }
                let le = labels["le"].as_str();
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                let rest: Vec<_> = labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                series.entry(rest).or_default().push((bound, *v));
            }
            for (rest, buckets) in series {
                assert!(buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
                assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
                let labels: Vec<(&str, &str)> =
                    rest.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let count = value(&samples, &format!("{family}_count"), &labels);
                assert_eq!(buckets.last().unwrap().1, count, "{family} +Inf = count");
            }
        }
        // Message counters by channel and kind: status rides the ring.
        let ring = value(
            &samples,
            "ringcast_messages_sent_total",
            &[("channel", "ring"), ("kind", "status")],
        );
        assert!(ring > 0.0, "n{id} sent status on the ring");
        assert!(
            value(
                &samples,
                "ringcast_received_bytes_total",
                &[("channel", "ring"), ("kind", "status")]
            ) > ring,
            "bytes exceed datagrams"
        );
        assert_eq!(
            value(
                &samples,
                "ringcast_frames_rejected_total",
                &[("reason", "bad_tag")]
            ),
            0.0,
            "every reason is exposed, zero included"
        );
    }

    // What the docs and the Grafana dashboard name exists.
    let (types, _) = parse(&c.metrics(1));
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    for doc in ["metrics.md", "grafana-dashboard.json", "prometheus.yml"] {
        let text = std::fs::read_to_string(docs.join(doc)).unwrap();
        let mut named = BTreeSet::new();
        for (i, _) in text.match_indices("ringcast_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // A Rust path such as ringcast_proto::stats is not a metric.
            let path = text[i + name.len()..].starts_with("::");
            if name.len() > "ringcast_".len() && !path {
                named.insert(name);
            }
        }
        assert!(!named.is_empty(), "{doc} names metrics");
        for name in named {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(&name);
            let old = doc == "metrics.md"
                && [
                    "ringcast_message_bytes_sent_total",
                    "ringcast_stream_bytes_sent_total",
                ]
                .contains(&family);
            assert!(
                old || types.contains_key(family),
                "{doc} names {name}, which /metrics does not have"
            );
        }
    }

    let sup = parse(&c.metrics(1)).1;
    assert!(value(&sup, "ringcast_placements_total", &[("outcome", "placed")]) >= 1.0);
    assert!(
        value(
            &sup,
            "ringcast_placements_total",
            &[("outcome", "unknown_title")]
        ) >= 1.0
    );
    assert_eq!(value(&sup, "ringcast_role", &[("role", "supervisor")]), 1.0);
    assert_eq!(
        value(&sup, "ringcast_cluster_nodes", &[("status", "failed")]),
        1.0
    );

    let n3 = parse(&c.metrics(3)).1;
    assert!(value(&n3, "ringcast_play_responses_total", &[("code", "307")]) >= 2.0);
    // 404s: nothing.mp4, and movie.mp4 until the supervisor saw it on disk 1.
    assert!(value(&n3, "ringcast_play_responses_total", &[("code", "404")]) >= 1.0);
    // n3 reads disk 1 for the stream (it is the only node of the two that
    // reaches it besides the supervisor, and the least loaded), or n1 does.
    let served = value(&n3, "ringcast_served_bytes_total", &[])
        + value(&parse(&c.metrics(1)).1, "ringcast_served_bytes_total", &[]);
    assert!(
        served >= 100_000.0,
        "the stream's bytes are counted: {served}"
    );
    assert_eq!(value(&n3, "ringcast_failure_declarations_total", &[]), 1.0);
    assert_eq!(
        value(&n3, "ringcast_failure_detection_seconds_count", &[]),
        1.0
    );
    let silence = value(&n3, "ringcast_failure_detection_seconds_sum", &[]);
    // 20 ms periods, miss limit 3: at least 60 ms of silence, well under 5 s.
    assert!((0.06..5.0).contains(&silence), "detection took {silence} s");
    assert!(
        value(
            &n3,
            "ringcast_disk_probe_duration_seconds_count",
            &[("disk", "2")]
        ) >= 1.0
    );
    // A probe slower than its timeout under the suite's load may fail once;
    // a disk is reported failed only after DISK_FALL failures in a row, and
    // this healthy one never is.
    assert_eq!(
        value(&n3, "ringcast_disk_reported_failed_total", &[("disk", "2")]),
        0.0
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    isolate_network();
    let mut c = Cluster::write(&Spec::new(1));
    let file = c.file.clone();
    c.spawn_custom(
        1,
        &file,
        &["--log-format", "json"],
        &[("RINGCAST_LOG", "info")],
    );
    c.wait_agree(1, &[1]);
    assert!(c.terminate(1).success());
    let log = std::fs::read_to_string(c.dir.join("node-1.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 3,
        "a node logs its start, its role and its leave:\n{log}"
    );
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert!(
        messages.iter().any(|m| m.contains("node n1 running")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("leaving")),
        "{messages:?}"
    );
}

#[test]
fn the_log_level_comes_from_ringcast_log() {
    isolate_network();
    let mut c = Cluster::write(&Spec::new(1));
    let file = c.file.clone();
    c.spawn_custom(
        1,
        &file,
        &[],
        &[("RINGCAST_LOG", "warn"), ("RUST_LOG", "debug")],
    );
    c.wait_agree(1, &[1]);
    assert!(c.terminate(1).success());
    let log = std::fs::read_to_string(c.dir.join("node-1.log")).unwrap();
    assert!(
        !log.contains("INFO") && !log.contains("DEBUG"),
        "RINGCAST_LOG=warn wins over RUST_LOG:\n{log}"
    );
}

#[test]
fn the_dashboard_is_served_with_its_types_a_cluster_only_csp_and_cors() {
    isolate_network();
    let mut c = Cluster::start(&Spec::new(3));
    c.wait_agree(1, &[1, 2, 3]);
    let get = |path: &str, origin: Option<&str>| {
        let mut req = c.agent.get(&format!("{}{path}", c.url(2)));
        if let Some(o) = origin {
            req = req.set("Origin", o);
        }
        req.call().unwrap()
    };
    let nodes: Vec<String> = [1, 2, 3].iter().map(|id| c.url(*id)).collect();
    // The addresses players are sent to: every service address and the
    // cluster address.
    let service: Vec<String> = c
        .service
        .values()
        .chain([&c.address])
        .map(|a| format!("http://{a}"))
        .collect();
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
        (
            "/dashboard/hls.light.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = get(path, None);
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let csp = r.header("content-security-policy").unwrap().to_string();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        // Sources are 'self', blob: media, data: images and the cluster's nodes only.
        for source in csp.split(';').flat_map(|d| d.split_whitespace().skip(1)) {
            let allowed = ["'self'", "'none'", "blob:", "data:"].contains(&source)
                || nodes.iter().chain(&service).any(|n| n == source);
            assert!(allowed, "{path}: {source} in {csp}");
        }
        for n in nodes.iter().chain(&service) {
            assert!(csp.contains(n.as_str()), "{path}: {n} in {csp}");
        }
    }
    // CORS: a page from another node of the cluster may read, no one else.
    let from_node = get("/v1/cluster", Some(&nodes[0]));
    assert_eq!(
        from_node.header("access-control-allow-origin"),
        Some(nodes[0].as_str())
    );
    // ...and so may the dashboard opened at the cluster address.
    let cluster = format!("http://{}", c.address);
    let from_address = get("/v1/cluster", Some(&cluster));
    assert_eq!(
        from_address.header("access-control-allow-origin"),
        Some(cluster.as_str())
    );
    let foreign = get("/v1/cluster", Some("http://example.invalid"));
    assert_eq!(foreign.header("access-control-allow-origin"), None);

    // The dashboard's leave: the token is checked, then node 3 leaves
    // although node 2 was asked.
    let url = format!("{}/v1/nodes/3/leave", c.url(2));
    let denied = c.agent.post(&url).call();
    assert!(
        matches!(denied, Err(ureq::Error::Status(401, _))),
        "{denied:?}"
    );
    let wrong = c
        .agent
        .post(&url)
        .set("Authorization", "Bearer nope")
        .call();
    assert!(
        matches!(wrong, Err(ureq::Error::Status(401, _))),
        "{wrong:?}"
    );
    let missing = c
        .agent
        .post(&format!("{}/v1/nodes/9/leave", c.url(2)))
        .set("Authorization", "Bearer test-admin-token")
        .call();
    assert!(
        matches!(missing, Err(ureq::Error::Status(404, _))),
        "{missing:?}"
    );
    let ok = c
        .agent
        .post(&url)
        .set("Authorization", "Bearer test-admin-token")
        .call()
        .unwrap();
    assert_eq!(ok.status(), 202);
    c.children.remove(&3).map(|mut ch| ch.wait());
    c.wait_agree(1, &[1, 2]);
    assert_eq!(c.status_of(1, 3).as_deref(), Some("left"));
}
