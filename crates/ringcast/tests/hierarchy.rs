//! Claim 5 with real processes: a tree of clusters laid out as `ringcast up
//! --shape 3x3` lays it out (three sub-clusters of three machines, each
//! cluster on its own multicast group), each sub-cluster's supervisor holding
//! its seat in the root cluster.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::*;
use ringcast_config::clusterfile::{self, ClusterFile};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A running tree and what its file says.
struct Tree {
    c: Cluster,
    file: ClusterFile,
    /// Each machine's cluster.
    cluster_of: BTreeMap<u32, u32>,
    /// The root cluster's id.
    root: u32,
}

fn start_tree() -> Tree {
    start_tree_with(false)
}

/// A tree whose every machine reads its transport faults from `faults-nID`
/// in the tree's folder (none at first).
fn start_tree_with(faults: bool) -> Tree {
    isolate_network();
    let dir = test_root().join(format!(
        "ringcast-tree-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = clusterfile::local_hierarchy(&dir, &[3, 3], None, true).unwrap();
    let file = clusterfile::load(&path).unwrap();
    let mut http = BTreeMap::new();
    let mut service = BTreeMap::new();
    let mut cluster_of = BTreeMap::new();
    for id in file.node_ids() {
        http.insert(id.0, file.http_addr(id).unwrap());
        service.insert(id.0, file.service_addr(id).unwrap());
        cluster_of.insert(id.0, file.node_settings(id).unwrap().proto.cluster.0);
    }
    let root = file
        .clusters()
        .iter()
        .find(|c| c.parent.is_none())
        .unwrap()
        .id
        .0;
    let mut c = Cluster {
        dir,
        file: path,
        http,
        service,
        // A tree has no cluster address: players enter by a machine's
        // service address (each leaf cluster's own).
        address: "0.0.0.0:0".parse().unwrap(),
        children: BTreeMap::new(),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_millis(500))
            .build(),
        ca: None,
    };
    for id in file.node_ids() {
        if faults {
            let rules = c.dir.join(format!("faults-n{}", id.0));
            let rules = rules.to_str().unwrap().to_string();
            let path = c.file.clone();
            c.spawn_custom(id.0, &path, &[], &[("RINGCAST_TEST_FAULTS", &rules)]);
        } else {
            c.spawn(id.0);
        }
    }
    Tree {
        c,
        file,
        cluster_of,
        root,
    }
}

impl Tree {
    /// Every answering machine's view, with the views of the seats it holds.
    fn views(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for id in self.c.running() {
            if let Some(v) = self.c.view(id) {
                for seat in v["seats"].as_array().into_iter().flatten() {
                    all.push(seat.clone());
                }
                all.push(v);
            }
        }
        all
    }

    /// The view of cluster `cluster`'s supervisor, if one answers.
    fn supervisor_view(&self, views: &[Value], cluster: u32) -> Option<Value> {
        views
            .iter()
            .find(|v| {
                v["cluster_id"].as_u64() == Some(u64::from(cluster))
                    && v["node_role"] == "supervisor"
            })
            .cloned()
    }

    /// Whether every cluster has one supervisor its live members follow,
    /// with every member up except `dead` machines and `dead_clusters`,
    /// which are listed failed.
    fn converged(&self, dead: &[u32], dead_clusters: &[u32]) -> bool {
        let views = self.views();
        self.file.clusters().iter().all(|c| {
            let members: Vec<u32> = c.members.iter().map(|m| m.0).collect();
            let all_dead = members
                .iter()
                .all(|m| dead.contains(m) || dead_clusters.contains(m));
            if dead_clusters.contains(&c.id.0) || all_dead {
                return true;
            }
            let Some(sup) = self.supervisor_view(&views, c.id.0) else {
                return false;
            };
            let agree = views
                .iter()
                .filter(|v| v["cluster_id"].as_u64() == Some(u64::from(c.id.0)))
                .all(|v| v["supervisor"] == sup["supervisor"]);
            let statuses_right = members.iter().all(|m| {
                let want = if dead.contains(m) || dead_clusters.contains(m) {
                    "failed"
                } else {
                    "up"
                };
                sup["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| n["id"] == *m && n["status"] == want)
            });
            agree && statuses_right
        })
    }

    fn wait_converged(&self, what: &str, dead: &[u32], dead_clusters: &[u32]) -> Duration {
        let start = Instant::now();
        loop {
            if self.converged(dead, dead_clusters) {
                return start.elapsed();
            }
            if start.elapsed() > LIMIT {
                panic!(
                    "timed out waiting until {what}\n{:#?}\n{}",
                    self.views(),
                    self.c.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The machine supervising leaf cluster `cluster`.
    fn leaf_supervisor(&self, cluster: u32) -> u32 {
        let views = self.views();
        let v = self
            .supervisor_view(&views, cluster)
            .expect("the cluster has a supervisor");
        v["node"].as_u64().unwrap() as u32
    }

    /// The machines of leaf cluster `cluster`.
    fn machines_of(&self, cluster: u32) -> Vec<u32> {
        self.cluster_of
            .iter()
            .filter(|(_, c)| **c == cluster)
            .map(|(m, _)| *m)
            .collect()
    }

    /// The sub-clusters of the root.
    fn subclusters(&self) -> Vec<u32> {
        let mut subs: Vec<u32> = self.cluster_of.values().copied().collect();
        subs.sort();
        subs.dedup();
        subs
    }

    /// The machine holding the root's supervising seat, and a sub-cluster
    /// other than that machine's.
    fn subcluster_away_from_the_root(&self) -> (u32, u32) {
        let root_machine = self.root_machine();
        let sub = self
            .subclusters()
            .into_iter()
            .find(|s| self.cluster_of[&root_machine] != *s)
            .expect("three sub-clusters");
        (root_machine, sub)
    }

    /// The machine whose seat supervises the root.
    fn root_machine(&self) -> u32 {
        let views = self.views();
        let root = self
            .supervisor_view(&views, self.root)
            .expect("the root has a supervisor");
        let seat = root["node"].as_u64().unwrap() as u32;
        self.leaf_supervisor(seat)
    }

    /// Events the machine `id` reports (its own and its seats'), read from
    /// its event stream for a moment.
    fn events(&self, id: u32) -> Vec<Value> {
        let agent = ureq::AgentBuilder::new()
            .timeout_read(Duration::from_millis(300))
            .build();
        let Ok(r) = agent.get(&format!("{}/v1/events", self.c.url(id))).call() else {
            return Vec::new();
        };
        BufReader::new(r.into_reader())
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string()))
            .filter_map(|d| serde_json::from_str(&d).ok())
            .collect()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_3x3_tree_forms_with_each_subclusters_supervisor_in_its_seat() {
    let t = start_tree();
    t.wait_converged("the tree formed", &[], &[]);
    let views = t.views();
    let root = t.supervisor_view(&views, t.root).unwrap();
    let usage = root["tables"]["node_usage"].as_array().unwrap().clone();
    for sub in t.subclusters() {
        // The seat is reached at the sub-cluster supervisor's machine.
        let holder = t.leaf_supervisor(sub);
        let seat = root["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == sub)
            .unwrap_or_else(|| panic!("the root lists {sub}: {root:#}"));
        assert_eq!(seat["http"], t.c.http[&holder].to_string(), "{root:#}");
        // Its capacity is the sum of its machines' (100 streams each).
        let row = usage.iter().find(|u| u["node"] == sub).unwrap();
        assert_eq!(row["capacity"]["max_streams"], 300, "{row:#}");
    }
    let out = ringcast(&["status", "--config", t.c.file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for c in t.file.clusters() {
        assert!(text.contains(&c.name), "status names {}: {text}", c.name);
    }
    assert_eq!(text.matches("supervisor n").count(), 4, "{text}");
    // The dashboard's overview, asked of a machine that supervises nothing,
    // shows every cluster of the tree as its supervisor sees it, each
    // sub-cluster under the root.
    let member =
        t.c.running()
            .into_iter()
            .find(|m| t.c.view(*m).is_some_and(|v| v["node_role"] == "member"))
            .expect("a machine that is only a member");
    let overview: Value =
        t.c.agent
            .get(&format!("{}/v1/overview", t.c.url(member)))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
    let clusters = overview["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 4, "{overview:#}");
    assert_eq!(clusters[0]["id"], t.root, "the root first: {overview:#}");
    assert!(clusters[0]["parent"].is_null());
    for sub in t.subclusters() {
        let c = clusters
            .iter()
            .find(|c| c["id"] == sub)
            .unwrap_or_else(|| panic!("the overview shows {sub}: {overview:#}"));
        assert_eq!(c["parent"], t.root);
        assert_eq!(c["supervisor_view"], true);
        assert_eq!(c["view_of"], t.leaf_supervisor(sub));
    }
}

#[test]
fn sigkill_of_a_subclusters_supervisor_moves_its_seat_and_the_parent_never_marks_it_failed() {
    let mut t = start_tree();
    t.wait_converged("the tree formed", &[], &[]);
    let (root_machine, sub) = t.subcluster_away_from_the_root();
    let victim = t.leaf_supervisor(sub);
    let killed_at = unix_ms();
    t.c.kill(victim);
    t.wait_converged("the seat moved", &[victim], &[]);
    let new_holder = t.leaf_supervisor(sub);
    assert_ne!(new_holder, victim);
    let views = t.views();
    let root = t.supervisor_view(&views, t.root).unwrap();
    let seat = root["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == sub)
        .unwrap()
        .clone();
    assert_eq!(seat["status"], "up");
    assert_eq!(seat["http"], t.c.http[&new_holder].to_string());
    // The root's supervisor saw the seat rejoin, never fail.
    let events = t.events(root_machine);
    let root_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["cluster"] == t.root && e["at_ms"].as_u64().unwrap_or(0) >= killed_at)
        .collect();
    assert!(
        root_events
            .iter()
            .any(|e| e["kind"] == "joined" && e["node"] == sub),
        "the new holder's seat joined: {root_events:#?}"
    );
    assert!(
        !root_events
            .iter()
            .any(|e| e["kind"] == "failed" && e["node"] == sub),
        "the root marked sub-cluster {sub} failed: {root_events:#?}"
    );
}

#[test]
fn sigkill_of_the_roots_supervisor_recovers_both_levels() {
    let mut t = start_tree();
    t.wait_converged("the tree formed", &[], &[]);
    let victim = t.root_machine();
    let sub = t.cluster_of[&victim];
    t.c.kill(victim);
    t.wait_converged("both levels recovered", &[victim], &[]);
    let survivor = t.root_machine();
    assert_ne!(survivor, victim);
    assert_ne!(t.leaf_supervisor(sub), victim);
}

#[test]
fn a_dead_subcluster_is_marked_failed_at_the_root_and_its_stream_continues_from_a_sibling() {
    let mut t = start_tree();
    t.wait_converged("the tree formed", &[], &[]);
    let movie: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut mounts: Vec<String> = Vec::new();
    for id in t.file.node_ids() {
        for d in t.file.node_settings(id).unwrap().proto.disks {
            if !mounts.contains(&d.mount) {
                mounts.push(d.mount);
            }
        }
    }
    // Every copy with the same modification time, as a replication tool
    // keeps it: the same version of the title on every disk.
    let mtime = std::time::SystemTime::now();
    for m in &mounts {
        let lib = std::path::Path::new(m).join("library");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("movie.part"), &movie).unwrap();
        std::fs::File::options()
            .write(true)
            .open(lib.join("movie.part"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(lib.join("movie.part"), lib.join("movie.mp4")).unwrap();
    }
    // Enter through a machine of the last sub-cluster; placement picks the
    // least loaded sub-cluster, the first, on a quiet tree.
    let subs = t.subclusters();
    let entry = t.machines_of(*subs.last().unwrap())[0];
    t.c.wait("the title is placeable", |c| {
        c.place(entry, "movie.mp4").is_ok()
    });
    let out = t.c.dir.join("download.mp4");
    let url = format!("{}/v1/play/movie.mp4", t.c.url(entry));
    let mut play = start_play(&url, 2_000_000, &out);
    let mut lines = BufReader::new(play.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let serving = t.c.node_of(&first).expect("a machine's address");
    let dead = t.cluster_of[&serving];
    assert_ne!(dead, t.cluster_of[&entry], "served away from the entry");
    wait_len(&out, 1 << 20);
    for m in t.machines_of(dead) {
        t.c.kill(m);
    }
    let stderr = play.stderr.take().unwrap();
    let mut guard = Reap(vec![play]);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = guard.0[0].wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut { stderr }, &mut err).unwrap();
    assert!(status.success(), "{err}\n{rest:?}");
    assert_eq!(
        Sha256::digest(std::fs::read(&out).unwrap()),
        Sha256::digest(&movie),
        "SHA-256 of the download"
    );
    let resumed = rest
        .iter()
        .find(|l| l.starts_with("reading from "))
        .expect("a resume");
    let other = t.c.node_of(resumed).unwrap();
    assert_ne!(t.cluster_of[&other], dead, "resumed in a sibling: {rest:?}");
    t.wait_converged(
        "the root marked the dead sub-cluster failed",
        &t.machines_of(dead),
        &[dead],
    );
}

#[test]
fn a_key_rotation_reaches_every_seat_and_the_next_holder_of_a_seat() {
    // Key rotation in a tree: the three stages of a rotation, each told to one
    // machine by SIGHUP. Every machine and every seat it holds ends on the
    // new key, and a seat taken after the rotation seals with it too.
    let mut t = start_tree();
    t.wait_converged("the tree formed", &[], &[]);
    let old = std::fs::read_to_string(t.c.dir.join("cluster.key")).unwrap();
    let (old, new) = (old.trim().to_string(), key_hex(0x22));
    let stages = [
        (format!("1:{old}\n2:{new}\n"), 2, vec![1, 2]),
        (format!("2:{new}\n1:{old}\n"), 3, vec![2, 1]),
        (format!("2:{new}\n"), 4, vec![2]),
    ];
    let everywhere = |t: &Tree, version: u32, keys: &[u8]| {
        let views = t.views();
        views.len() >= 9 + 3
            && views.iter().all(|v| {
                v["config_version"] == version
                    && v["keys"].as_array().is_some_and(|k| {
                        k.iter().map(|id| id.as_u64()).collect::<Vec<_>>()
                            == keys
                                .iter()
                                .map(|id| Some(u64::from(*id)))
                                .collect::<Vec<_>>()
                    })
            })
    };
    for (keys, version, ids) in stages {
        t.c.stage_keys(&keys, version);
        t.c.signal(9, nix::sys::signal::Signal::SIGHUP);
        t.c.wait(
            &format!("every machine and seat runs version {version} with keys {ids:?}"),
            |_| everywhere(&t, version, &ids),
        );
        t.wait_converged(&format!("the tree holds at version {version}"), &[], &[]);
    }
    let (_, sub) = t.subcluster_away_from_the_root();
    let victim = t.leaf_supervisor(sub);
    t.c.kill(victim);
    t.wait_converged("the seat moved after the rotation", &[victim], &[]);
    let holder = t.leaf_supervisor(sub);
    let seat = t.c.view(holder).unwrap()["seats"][0].clone();
    assert_eq!(seat["cluster_id"], t.root, "{seat:#}");
    assert_eq!(seat["keys"], serde_json::json!([2]), "{seat:#}");
    assert_eq!(seat["config_version"], 4, "{seat:#}");
}

/// Claim 5, the real-process twin of the simulator's scenario of the same
/// name (`crates/ringcast-sim/tests/hierarchy.rs`), run by the same seat code
/// (`ringcast_proto::Machine`): a seat announces its sub-cluster's new
/// capacity when a machine of it dies, and when the root's supervisor never
/// hears that announcement the seat announces it again until the root's
/// tables show it.
#[test]
fn a_seat_reannounces_its_subclusters_capacity_after_the_announcement_is_lost() {
    let mut t = start_tree_with(true);
    t.wait_converged("the tree formed", &[], &[]);
    let views = t.views();
    let root = t.supervisor_view(&views, t.root).unwrap();
    let root_seat = root["node"].as_u64().unwrap() as u32;
    let upstream = root["upstream"].as_u64().map(|u| u as u32);
    // A sub-cluster whose seat neither supervises the root nor sends the
    // root's supervisor its ring status: cut off from it on the bus only,
    // it stays on the ring, and the root never marks it failed.
    let sub = t
        .subclusters()
        .into_iter()
        .find(|s| *s != root_seat && Some(*s) != upstream)
        .expect("a third sub-cluster");
    let root_machine = t.leaf_supervisor(root_seat);
    let holder = t.leaf_supervisor(sub);
    let seat_ring = root["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == sub)
        .unwrap()["ring"]
        .as_str()
        .unwrap()
        .to_string();
    let capacity = |t: &Tree| -> Option<u64> {
        let views = t.views();
        let root = t.supervisor_view(&views, t.root)?;
        root["tables"]["node_usage"]
            .as_array()?
            .iter()
            .find(|u| u["node"] == sub)?["capacity"]["max_streams"]
            .as_u64()
    };
    assert_eq!(capacity(&t), Some(300));
    let log = t.c.dir.join(format!("node-{root_machine}.log"));
    let rules = t.c.dir.join(format!("faults-n{root_machine}"));
    replace_file(&rules, &format!("drop_from {seat_ring}\n"));
    t.c.wait("the root's supervisor drops the seat's datagrams", |_| {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains(&format!("now drop datagrams from {{Socket({seat_ring})}}")))
    });
    let victim = *t
        .machines_of(sub)
        .iter()
        .find(|m| **m != holder)
        .expect("a machine that does not supervise");
    let killed_at = unix_ms();
    t.c.kill(victim);
    t.c.wait(
        "the sub-cluster's supervisor marks its machine failed",
        |c| {
            c.view(holder).is_some_and(|v| {
                v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| n["id"] == victim && n["status"] == "failed")
            })
        },
    );
    assert_eq!(
        capacity(&t),
        Some(300),
        "the seat's announcement of 200 streams was lost"
    );
    replace_file(&rules, "");
    t.c.wait("the root's tables show the seat's new capacity", |_| {
        capacity(&t) == Some(200)
    });
    let events = t.events(root_machine);
    assert!(
        !events.iter().any(|e| e["cluster"] == t.root
            && e["kind"] == "failed"
            && e["node"] == sub
            && e["at_ms"].as_u64().unwrap_or(0) >= killed_at),
        "the root marked sub-cluster {sub} failed: {events:#?}"
    );
}
