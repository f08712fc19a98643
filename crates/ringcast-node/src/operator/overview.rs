//! Claim 5 and the dashboard: the whole tree of clusters, from any machine
//! of it.
//!
//! A machine knows its own cluster and the clusters of the seats it holds.
//! To show every cluster as its supervisor sees it, [`walk`] climbs from the
//! machine's cluster to the root (asking, level by level, the machine that
//! supervises the highest cluster known so far), then descends from the
//! root, asking each sub-cluster's seat holder for that sub-cluster's view.
//! Every hop is one `GET /v1/cluster` to a machine not asked before; a
//! machine that does not answer leaves its part of the tree out rather than
//! failing the page, and the whole walk stops asking after [`WALK_LIMIT`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use ringcast_proto::NodeId;

use crate::host::web::Web;
use serde::Serialize;

/// The most levels climbed or descended; deeper trees are cut here.
const MAX_LEVELS: usize = ringcast_config::clusterfile::MAX_LEVELS;

/// How long one walk may spend asking other machines.
pub const WALK_LIMIT: Duration = Duration::from_secs(3);
/// How long one machine of the walk may take to answer.
const WALK_REQUEST: Duration = Duration::from_secs(1);

/// One cluster of `GET /v1/overview`: a parent's entry comes first and its
/// sub-clusters name it in `parent` (claim 5).
#[derive(Debug, Serialize)]
pub struct ClusterEntry {
    /// The cluster's id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// The cluster it is a node of, if any (the hierarchy, claim 5).
    pub parent: Option<u32>,
    /// Whose view `view` is.
    pub view_of: NodeId,
    /// Whether `view` is the supervisor's own (`false`: the answering node's,
    /// because the supervisor did not answer).
    pub supervisor_view: bool,
    /// The cluster as `GET /v1/cluster` of `view_of` shows it.
    pub view: serde_json::Value,
}

/// `GET /v1/overview`: what the dashboard shows, as a list of clusters.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// The node that answered.
    pub answered_by: NodeId,
    /// Its HTTP address.
    pub answered_by_http: String,
    /// The clusters, parents before children.
    pub clusters: Vec<ClusterEntry>,
}

/// The machines asked so far, and until when asking goes on.
struct Asked {
    views: BTreeMap<String, Vec<Value>>,
    until: Instant,
    /// How machines are asked.
    web: Web,
    agent: ureq::Agent,
}

/// Claim 5: the views one machine's `GET /v1/cluster` holds: its own
/// cluster's, then those of the seats it holds (nearest parent first).
pub fn views_of(view: &Value) -> impl Iterator<Item = &Value> {
    std::iter::once(view).chain(view["seats"].as_array().into_iter().flatten())
}

/// `GET /v1/cluster` of the machine at `http`, split into its views; once
/// for each machine, and nothing after the walk's time is up.
fn fetch(http: &str, cache: &mut Asked) -> Vec<Value> {
    if let Some(views) = cache.views.get(http) {
        return views.clone();
    }
    if Instant::now() >= cache.until {
        return Vec::new();
    }
    let views: Vec<Value> = cache
        .agent
        .get(&cache.web.url(http, "/v1/cluster"))
        .call()
        .ok()
        .and_then(|r| r.into_json::<Value>().ok())
        .map(|v| views_of(&v).cloned().collect())
        .unwrap_or_default();
    cache.views.insert(http.to_string(), views.clone());
    views
}

fn cluster_id(view: &Value) -> Option<u64> {
    view["cluster_id"].as_u64()
}

fn supervises(view: &Value) -> bool {
    view["node_role"] == "supervisor"
}

/// The HTTP address of the member `id` of `view`'s map, if it is up.
fn http_of(view: &Value, id: &Value) -> Option<String> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == *id && n["status"] == "up")
        .and_then(|n| n["http"].as_str().map(str::to_string))
}

/// The supervisor's view of the cluster `view` belongs to, as the machine
/// that supervises it answers; `view` itself if it is the supervisor's or
/// the supervisor does not answer.
fn supervisor_view(view: &Value, cache: &mut Asked) -> (Value, Vec<Value>) {
    if supervises(view) {
        return (view.clone(), Vec::new());
    }
    let Some(http) = http_of(view, &view["supervisor"]) else {
        return (view.clone(), Vec::new());
    };
    let views = fetch(&http, cache);
    match views
        .iter()
        .find(|v| cluster_id(v) == cluster_id(view) && supervises(v))
    {
        Some(v) => (v.clone(), views.clone()),
        None => (view.clone(), Vec::new()),
    }
}

fn entry(view: Value, parent: Option<u64>, name_of: impl Fn(&Value) -> String) -> ClusterEntry {
    ClusterEntry {
        id: cluster_id(&view).unwrap_or(0) as u32,
        name: name_of(&view),
        parent: parent.map(|p| p as u32),
        view_of: NodeId(view["node"].as_u64().unwrap_or(0) as u32),
        supervisor_view: supervises(&view),
        view,
    }
}

/// Claim 5: every cluster of the tree `own` (this machine's `/v1/cluster`
/// view) belongs to, each as its supervisor sees it, parents before their
/// sub-clusters. Blocking: it asks other machines over HTTP.
pub fn walk(web: &Web, own: Value) -> Vec<ClusterEntry> {
    let mut cache = Asked {
        views: BTreeMap::new(),
        until: Instant::now() + WALK_LIMIT,
        web: web.clone(),
        agent: web.agent(WALK_REQUEST),
    };
    // Climb: the highest cluster the machine in hand knows, until its
    // supervisor's machine holds no seat above it.
    let (mut top, mut views) = supervisor_view(&own, &mut cache);
    if views.is_empty() {
        views = views_of(&own).cloned().collect();
    }
    for _ in 0..MAX_LEVELS {
        let Some(last) = views.last().cloned() else {
            break;
        };
        if cluster_id(&last) == cluster_id(&top) {
            break;
        }
        let (up, up_views) = supervisor_view(&last, &mut cache);
        top = up;
        if up_views.is_empty() {
            // The parent's supervisor did not answer: show what is known.
            break;
        }
        views = up_views;
    }
    let name = |v: &Value| v["cluster"].as_str().unwrap_or_default().to_string();
    // Descend: each member of a cluster of sub-clusters is a seat, reached
    // at its holder, the sub-cluster's supervisor.
    let mut out = Vec::new();
    let mut shown: BTreeSet<Option<u64>> = BTreeSet::from([cluster_id(&top)]);
    let mut level = vec![(top, None::<u64>)];
    for _ in 0..MAX_LEVELS {
        let mut next = Vec::new();
        for (view, parent) in level {
            if view["members_are_clusters"] == true {
                for member in view["nodes"].as_array().into_iter().flatten() {
                    let Some(http) = http_of(&view, &member["id"]) else {
                        continue;
                    };
                    let sub = member["id"].as_u64();
                    if !shown.insert(sub) {
                        continue;
                    }
                    if let Some(v) = fetch(&http, &mut cache)
                        .into_iter()
                        .find(|v| cluster_id(v) == sub && supervises(v))
                    {
                        next.push((v, cluster_id(&view)));
                    }
                }
            }
            out.push(entry(view, parent, name));
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    out
}
