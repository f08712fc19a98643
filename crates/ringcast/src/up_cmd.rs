//! `ringcast up`: a local cluster of real node processes on loopback, in one command.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ringcast_config::clusterfile;
use ringcast_proto::NodeId;

use crate::http;
use serde_json::Value;

/// Node processes of a local cluster; they leave and stop when dropped.
pub struct LocalCluster {
    /// The cluster file.
    pub file: PathBuf,
    /// `(node id, http base, child)` per node.
    pub nodes: Vec<(u32, String, Option<Child>)>,
    dir: PathBuf,
    remove_dir: bool,
    /// How the node processes write their logs.
    pub log_format: crate::LogFormat,
    /// The titles put on the disks.
    pub titles: Vec<String>,
    /// Claim 5: whether the file is a tree of clusters.
    pub tree: bool,
}

/// What `up` runs: one cluster of N nodes, or a tree of clusters (claim 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One cluster of this many nodes.
    Nodes(u32),
    /// A tree: members per cluster at each level, root first (`3x3` is a
    /// root of three sub-clusters of three nodes).
    Shape(Vec<u32>),
}

impl LocalCluster {
    /// Writes a cluster file for `layout` into `dir` (a fresh temporary one
    /// when `None`), with one disk per node shared by two nodes of its
    /// cluster, puts the library on the disks (each title on two disks of
    /// every leaf cluster), and starts one process per node.
    pub fn start(layout: &Layout, dir: Option<&Path>, library: &Library) -> Result<LocalCluster> {
        Self::start_with(layout, dir, library, crate::LogFormat::Text, false)
    }

    /// [`LocalCluster::start`] with the nodes logging in `log_format`, and
    /// with `https` every node serving HTTPS under credentials made for the
    /// run in `credentials/` (this process then trusts their CA).
    pub fn start_with(
        layout: &Layout,
        dir: Option<&Path>,
        library: &Library,
        log_format: crate::LogFormat,
        https: bool,
    ) -> Result<LocalCluster> {
        if let Layout::Nodes(n) = layout {
            if !(1..=64).contains(n) {
                bail!("--nodes must be between 1 and 64, not {n}");
            }
        }
        let (dir, remove_dir) = match dir {
            Some(d) => (d.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("ringcast-up-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let file = match layout {
            Layout::Nodes(n) => clusterfile::local_cluster_with_disks(&dir, *n, None, true)?,
            Layout::Shape(shape) => clusterfile::local_hierarchy(&dir, shape, None, true)?,
        };
        let titles = library.files(&dir)?;
        if https {
            serve_https(&file)?;
        }
        let cf = clusterfile::load(&file)?;
        for disks in disk_groups(&cf)? {
            place_titles(&dir, &disks, &titles)?;
        }
        let mut cluster = LocalCluster {
            file: file.clone(),
            nodes: Vec::new(),
            dir: dir.clone(),
            remove_dir,
            log_format,
            titles: titles.iter().map(|(t, _)| t.clone()).collect(),
            tree: cf.is_hierarchy(),
        };
        for id in cf.node_ids() {
            let http = cf
                .http_addr(id)
                .map(http::base)
                .context("every node of a local cluster has an HTTP address")?;
            cluster.nodes.push((id.0, http, None));
            cluster.spawn(id.0)?;
        }
        Ok(cluster)
    }

    /// Starts (or restarts) the process of node `id`; its log is appended to.
    pub fn spawn(&mut self, id: u32) -> Result<()> {
        let exe = std::env::current_exe().context("cannot find the ringcast executable")?;
        let log = self.dir.join(format!("node-{id}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone().context("cannot share the log file")?;
        let child = Command::new(&exe)
            .args(["--log-format", self.log_format.arg()])
            .arg("node")
            .arg("--config")
            .arg(&self.file)
            .arg("--node")
            .arg(id.to_string())
            .stdin(Stdio::null())
            // Their own process group: Ctrl-C reaches `up` alone, which
            // then asks each node to leave exactly once.
            .process_group(0)
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        let slot = self
            .nodes
            .iter_mut()
            .find(|n| n.0 == id)
            .with_context(|| format!("node {id} is not in the cluster file"))?;
        slot.2 = Some(child);
        Ok(())
    }

    /// SIGKILL of node `id`: it dies without a word.
    pub fn kill(&mut self, id: u32) -> Result<()> {
        let slot = self
            .nodes
            .iter_mut()
            .find(|n| n.0 == id)
            .with_context(|| format!("node {id} is not in the cluster"))?;
        if let Some(mut c) = slot.2.take() {
            c.kill().with_context(|| format!("cannot kill node {id}"))?;
            let _ = c.wait();
        }
        Ok(())
    }

    /// The directory holding the cluster file and the node logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until every cluster of the file has formed: each machine
    /// follows its cluster's supervisor with every member up, and each
    /// parent cluster's supervisor lists every sub-cluster up. Returns the
    /// root cluster's supervisor.
    pub fn wait_formed(&self, limit: Duration) -> Result<u32> {
        let cf = clusterfile::load(&self.file)?;
        let clusters = cf.clusters();
        let agent = http::agent();
        let deadline = Instant::now() + limit;
        loop {
            let views: Vec<Value> = self
                .nodes
                .iter()
                .filter_map(|(_, base, _)| http::cluster(&agent, base).ok())
                .collect();
            if views.len() == self.nodes.len() {
                if let Some(root) = formed(&clusters, &views) {
                    return Ok(root);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster did not form within {} s; see the logs in {}",
                    limit.as_secs(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks every node to leave (SIGTERM) and waits for them, then kills stragglers.
    pub fn stop(&mut self) {
        for (_, _, child) in &self.nodes {
            if let Some(c) = child {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, _, child) in &mut self.nodes {
            if let Some(c) = child.as_mut() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            *child = None;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The root's supervisor if every cluster has formed, judged from every
/// machine's view: members agree on their cluster's supervisor, and each
/// cluster's supervisor (a machine, or a seat some machine holds) lists
/// exactly its members, all up.
fn formed(clusters: &[clusterfile::ClusterInfo], views: &[Value]) -> Option<u32> {
    let all: Vec<&Value> = views
        .iter()
        .flat_map(ringcast_node::operator::overview::views_of)
        .collect();
    let mut root = None;
    for c in clusters {
        let of_cluster: Vec<&&Value> = all
            .iter()
            .filter(|v| v["cluster_id"].as_u64() == Some(u64::from(c.id.0)))
            .collect();
        let sup = of_cluster.iter().find(|v| v["node_role"] == "supervisor")?;
        let members_up = sup["nodes"].as_array().is_some_and(|ns| {
            ns.len() == c.members.len() && ns.iter().all(|n| n["status"] == "up")
        });
        let agree = of_cluster
            .iter()
            .all(|v| v["supervisor"] == sup["supervisor"]);
        if !members_up || !agree {
            return None;
        }
        if c.parent.is_none() {
            root = sup["supervisor"].as_u64().map(|s| s as u32);
        }
    }
    root
}

/// What a local cluster serves.
pub enum Library {
    /// Nothing.
    Empty,
    /// A small playable library made with ffmpeg (an H.264 MP4 and an HLS
    /// rendition), generated once into a cache; empty without ffmpeg.
    Embedded,
    /// The files of a folder (depth 1 or 2, names valid as titles).
    Dir(PathBuf),
}

impl Library {
    /// The (title, source file) pairs to serve.
    fn files(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        let root = match self {
            Library::Empty => return Ok(Vec::new()),
            Library::Dir(p) => p.clone(),
            Library::Embedded => match embedded_library(dir)? {
                Some(p) => p,
                None => return Ok(Vec::new()),
            },
        };
        let mut out = Vec::new();
        for entry in walk(&root)? {
            let rel = entry
                .strip_prefix(&root)
                .context("a library file outside its folder")?
                .to_string_lossy()
                .into_owned();
            if ringcast_node::library::catalog::parse_title(&rel).is_ok() {
                out.push((rel, entry));
            } else {
                eprintln!("skipping {}: not a valid title name", entry.display());
            }
        }
        if out.is_empty() {
            eprintln!(
                "note: the library {} has no playable titles",
                root.display()
            );
        }
        Ok(out)
    }
}

fn walk(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let read =
        |p: &Path| std::fs::read_dir(p).with_context(|| format!("cannot read {}", p.display()));
    for e in read(root)? {
        let path = e?.path();
        if path.is_dir() {
            for f in read(&path)? {
                let f = f?.path();
                if f.is_file() {
                    out.push(f);
                }
            }
        } else if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Generates the embedded library with ffmpeg into a cache folder, once.
fn embedded_library(dir: &Path) -> Result<Option<PathBuf>> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| dir.to_path_buf())
        .join("ringcast")
        .join("library-v2");
    if cache.join("movie.mp4").exists() && cache.join("show").join("index.m3u8").exists() {
        return Ok(Some(cache));
    }
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("note: ffmpeg is not installed, so the embedded library is empty; install ffmpeg or give --library DIR");
        return Ok(None);
    }
    eprintln!(
        "generating the embedded library with ffmpeg into {} ...",
        cache.display()
    );
    std::fs::create_dir_all(cache.join("show"))
        .with_context(|| format!("cannot create {}", cache.display()))?;
    let source = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "20",
    ];
    let codecs = [
        "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-c:a", "aac",
    ];
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error"])
            .args(args)
            .output()
            .context("cannot run ffmpeg")?;
        if !out.status.success() {
            bail!(
                "ffmpeg failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let mp4 = cache.join("movie.mp4");
    let mut args: Vec<&str> = source.to_vec();
    args.extend(codecs);
    args.extend(["-movflags", "+faststart"]);
    let mp4s = mp4.to_string_lossy().into_owned();
    args.push(&mp4s);
    run(&args)?;
    let playlist = cache.join("show").join("index.m3u8");
    let segments = cache.join("show").join("seg_%03d.ts");
    let (pl, seg) = (
        playlist.to_string_lossy().into_owned(),
        segments.to_string_lossy().into_owned(),
    );
    let mut args: Vec<&str> = source.to_vec();
    args.extend(codecs);
    args.extend([
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_filename",
        &seg,
        &pl,
    ]);
    run(&args)?;
    Ok(Some(cache))
}

/// Puts each title on two disks: title i on disk (i mod n)+1 and the next one.
/// The disk ids of each leaf cluster, so every cluster can serve every title.
fn disk_groups(cf: &clusterfile::ClusterFile) -> Result<Vec<Vec<u32>>> {
    let mut groups: std::collections::BTreeMap<u32, std::collections::BTreeSet<u32>> =
        std::collections::BTreeMap::new();
    for id in cf.node_ids() {
        let settings = cf.node_settings(id)?;
        groups
            .entry(settings.proto.cluster.0)
            .or_default()
            .extend(settings.proto.disks.iter().map(|d| d.id.0));
    }
    Ok(groups
        .into_values()
        .map(|d| d.into_iter().collect())
        .filter(|d: &Vec<u32>| !d.is_empty())
        .collect())
}

/// Puts each title on two of `disks` (every title on two different disks
/// when there are two or more). A folder's titles (an HLS rendition: its
/// playlists and segments) go to the same two disks: a stream is placed
/// once, at its playlist, and its segments are read from the same disk.
fn place_titles(dir: &Path, disks: &[u32], titles: &[(String, PathBuf)]) -> Result<()> {
    let n = disks.len();
    let mut groups: Vec<&str> = Vec::new();
    for (title, source) in titles {
        let group = title
            .split_once('/')
            .map_or(title.as_str(), |(folder, _)| folder);
        let i = match groups.iter().position(|g| *g == group) {
            Some(i) => i,
            None => {
                groups.push(group);
                groups.len() - 1
            }
        };
        let first = disks[i % n];
        let second = disks[(i + 1) % n];
        for disk in [first, second] {
            let target = dir
                .join("disks")
                .join(format!("d{disk}"))
                .join("library")
                .join(title);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            if target.exists() {
                continue;
            }
            if std::fs::hard_link(source, &target).is_err() {
                copy_with_mtime(source, &target)?;
            }
        }
    }
    Ok(())
}

/// Copies a title keeping its modification time, so that both copies carry
/// the same `ETag` and a player resumes from either.
fn copy_with_mtime(source: &Path, target: &Path) -> Result<()> {
    let context = || format!("cannot copy {} to {}", source.display(), target.display());
    std::fs::copy(source, target).with_context(context)?;
    let mtime = std::fs::metadata(source)
        .and_then(|m| m.modified())
        .with_context(context)?;
    std::fs::File::options()
        .write(true)
        .open(target)
        .and_then(|f| f.set_modified(mtime))
        .with_context(context)
}

/// Runs `ringcast up` until Ctrl-C.
pub fn run(
    layout: &Layout,
    dir: Option<&Path>,
    library: &Library,
    log_format: crate::LogFormat,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Listen for Ctrl-C before anything starts, so an early one still stops
    // the nodes cleanly instead of killing `up` alone.
    let mut interrupted = rt.block_on(async { Interrupt::listen() })?;
    let mut cluster = LocalCluster::start_with(layout, dir, library, log_format, false)?;
    let file = clusterfile::load(&cluster.file).ok();
    for (id, http, _) in &cluster.nodes {
        match file.as_ref().and_then(|f| f.service_addr(NodeId(*id))) {
            Some(service) => println!("node {id} {http} service http://{service}"),
            None => println!("node {id} {http}"),
        }
    }
    // Claim 13: players are given the cluster address, which outlives
    // every process; a node's own listener dies with it.
    let entry = match file.as_ref().and_then(|f| f.cluster_address()) {
        Some(address) => {
            println!("cluster http://{address}");
            Some(format!("http://{address}"))
        }
        None => cluster.nodes.first().map(|n| n.1.clone()),
    };
    let titles = &cluster.titles;
    if let (Some(first), Some(entry)) = (titles.first(), entry.as_ref()) {
        eprintln!("titles:       {}", titles.join(", "));
        eprintln!("play one:     ringcast play {entry}/v1/play/{first}");
        if let Some(hls) = titles.iter().find(|t| t.ends_with(".m3u8")) {
            eprintln!("or any player: ffplay {entry}/v1/play/{hls}");
        }
    }
    eprintln!("cluster file: {}", cluster.file.display());
    eprintln!("node logs:    {}/node-*.log", cluster.dir().display());
    eprint!("forming...");
    match cluster.wait_formed(Duration::from_secs(20)) {
        Ok(sup) if cluster.tree => {
            eprintln!(" formed: the root is supervised by the seat of sub-cluster c{sup}")
        }
        Ok(sup) => eprintln!(" formed: supervisor n{sup}"),
        Err(e) => eprintln!(" {e:#}"),
    }
    let first = cluster.nodes.first().map(|n| n.1.as_str()).unwrap_or("");
    eprintln!(
        "dashboard:    {first}/ (any node)\nwatch it:     ringcast status --config {}\n              ringcast events --url {first}\nCtrl-C makes every node leave and stops.",
        cluster.file.display(),
    );
    rt.block_on(interrupted.wait());
    eprintln!("\nstopping: every node leaves the cluster");
    cluster.stop();
    eprintln!("stopped");
    Ok(())
}

/// SIGINT and SIGTERM, registered once and awaited later.
struct Interrupt {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn listen() -> Result<Interrupt> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Interrupt {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// HTTPS for the local cluster file `file`: credentials for its nodes in
/// `credentials/` beside it (as `ringcast credentials init` makes them),
/// named by the file, and trusted by this process.
fn serve_https(file: &Path) -> Result<()> {
    let cf = clusterfile::load(file)?;
    let dir = file
        .parent()
        .context("the cluster file has a folder")?
        .join("credentials");
    let nodes = crate::credentials_cmd::certificate_names(&cf)?;
    ringcast_config::credentials::init(&dir, &nodes, &["127.0.0.1".to_string()], true)?;
    let mut text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .replacen(
            "[cluster]\n",
            "[cluster]\ntls_ca = \"credentials/ca.crt\"\n",
            1,
        );
    for n in cf.node_ids() {
        let id = n.0;
        text = text.replacen(
            &format!("[[node]]\nid = {id}\n"),
            &format!(
                "[[node]]\nid = {id}\ntls_cert = \"credentials/node-{id}.crt\"\ntls_key = \"credentials/node-{id}.key\"\n"
            ),
            1,
        );
    }
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
    http::trust(&dir.join(ringcast_config::credentials::CA_CERT))
}
