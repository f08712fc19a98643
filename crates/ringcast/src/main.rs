//! `ringcast`: the command-line program, a thin layer over the library crates.

mod bench_cmd;
mod bench_hls_client;
mod bench_interrupt;
mod bench_nginx;
mod bench_segments;
mod bench_soak;
mod bench_stream;
mod bench_traffic;
mod check_cmd;
mod credentials_cmd;
mod drain_cmd;
mod http;
mod manual_cmd;
mod node_cmd;
mod play_cmd;
mod status_cmd;
mod up_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ringcast_config::{clusterfile, service};

#[derive(Parser)]
#[command(
    name = "ringcast",
    version,
    about = "A self-supervising cluster for streaming video"
)]
struct Cli {
    /// How logs are written: readable text or one JSON object per line on
    /// standard error, or structured fields to the systemd journal (the
    /// default when standard error is the journal). The level comes from
    /// RINGCAST_LOG (or RUST_LOG), e.g. `info` or `ringcast_node=debug`;
    /// `info` by default.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Same as `--log-format json` (kept for existing scripts).
    #[arg(long, global = true, hide = true)]
    log_json: bool,
    /// The cluster's CA certificate: reach nodes over HTTPS and trust only
    /// it (`ringcast credentials init` writes ca.crt). Not needed with a
    /// cluster file that names tls_ca.
    #[arg(long, global = true, env = "RINGCAST_CACERT")]
    cacert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a local cluster of node processes on loopback until Ctrl-C.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 5, conflicts_with = "shape")]
        nodes: u32,
        /// Claim 5: a tree of clusters instead, members per cluster at each
        /// level, root first: `3x3` is three sub-clusters of three nodes,
        /// each on its own multicast group.
        #[arg(long)]
        shape: Option<String>,
        /// Directory for the cluster file and node logs (a temporary one by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Serve the files of this folder (each title on two disks) instead of
        /// the embedded library.
        #[arg(long)]
        library: Option<PathBuf>,
    },
    /// Runs one node of a cluster.
    Node {
        /// The cluster file, read directly.
        #[arg(long, conflicts_with = "config_url")]
        config: Option<PathBuf>,
        /// The configuration service, e.g. http://10.0.0.1:7300.
        #[arg(long)]
        config_url: Option<String>,
        /// Where the configuration fetched from the service is cached.
        #[arg(long, default_value = ".ringcast")]
        cache_dir: PathBuf,
        /// This node's credentials for an https configuration service: a
        /// folder with ca.crt, config-signing.pub, node-N.crt and node-N.key
        /// (`ringcast credentials init` makes them).
        #[arg(long, requires = "config_url")]
        credentials: Option<PathBuf>,
        /// This node's id in the cluster file.
        #[arg(long, allow_negative_numbers = true)]
        node: i64,
        /// Where the node keeps its state (its life number across restarts);
        /// by default `state` beside the cluster file, or the cache folder.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Shows the cluster: supervisor, epoch, every node's status and role.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the JSON of /v1/cluster.
        #[arg(long)]
        json: bool,
        /// Show the answering node's own view instead of following it to the supervisor.
        #[arg(long)]
        no_follow: bool,
    },
    /// Follows the cluster's events until interrupted.
    Events {
        #[command(flatten)]
        target: Target,
        /// Print each event as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checks or serves a cluster file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Downloads a title through the cluster, resuming across node failures.
    Play {
        /// The play URL, e.g. http://127.0.0.1:8501/v1/play/movie.mp4.
        url: String,
        /// Output file (default: the title's file name).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Read at most this many bytes per second (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_rate: u64,
        /// Print plain progress lines instead of a bar.
        #[arg(long)]
        plain: bool,
    },
    /// Measures the cluster with real processes.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Takes a node out of service with no gap for any player: it gets no
    /// new stream, its address moves to the next node, it finishes what it
    /// sends; waits until it is empty.
    Drain {
        /// The node's id.
        node: u32,
        #[command(flatten)]
        target: Target,
        /// The admin token's file (default: the cluster file's, or
        /// $RINGCAST_ADMIN_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Seconds to wait for the node to be empty (0: do not wait).
        #[arg(long, default_value_t = 3600)]
        wait_seconds: u64,
    },
    /// Puts a drained node back in service.
    Undrain {
        /// The node's id.
        node: u32,
        #[command(flatten)]
        target: Target,
        /// The admin token's file (default: the cluster file's, or
        /// $RINGCAST_ADMIN_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Makes the cluster's credentials: a CA, the configuration service's
    /// certificate and signing key, and a certificate for each node.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Prints a shell's completion script: `ringcast completions bash >
    /// /etc/bash_completion.d/ringcast`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Writes the manual pages (ringcast.1, ringcast-node.1, ...) into a folder.
    Man {
        /// The folder (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs a narrated simulated cluster on a virtual clock.
    Demo {
        /// Number of nodes (3 to 64).
        #[arg(long, default_value_t = 5)]
        nodes: u32,
        /// Seed of the run; the same seed replays the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Which running cluster a command asks.
#[derive(clap::Args)]
struct Target {
    /// The cluster file (asks its nodes).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A node's HTTP address, e.g. http://127.0.0.1:8501.
    #[arg(long)]
    url: Option<String>,
}

impl Target {
    fn bases(&self) -> Result<Vec<String>> {
        status_cmd::targets(self.config.as_deref(), self.url.as_deref())
    }

    /// Node `node` and the admin token that may act on it.
    fn admin(&self, node: u32, token_file: Option<&PathBuf>) -> Result<drain_cmd::Target> {
        drain_cmd::target(
            node,
            self.config.as_deref(),
            self.url.as_deref(),
            token_file,
        )
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// SIGKILL of the supervisor and of a member, timed until every survivor sees it.
    Failover {
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 8)]
        nodes: u32,
        /// Trials.
        #[arg(long, default_value_t = 10)]
        trials: u32,
        /// Directory for the cluster file and logs (temporary by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// A local cluster serving streams while a CPU hog saturates
    /// every core; counts false failure declarations, false takeovers and
    /// lost streams. The last line is JSON.
    Soak {
        /// How long to soak, minutes.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 5)]
        nodes: u32,
        /// Streams playing at once.
        #[arg(long, default_value_t = 4)]
        streams: u32,
        /// Busy threads of the hog (default: one per CPU).
        #[arg(long)]
        hog_threads: Option<usize>,
        /// Directory for the cluster, library and logs (temporary by default).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Concurrent clients reading titles through ringcast and, with
    /// --vs-nginx, the same files from nginx, in the same run.
    Stream {
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: u32,
        /// Also measure nginx (installed from Debian when missing) with the same load.
        #[arg(long)]
        vs_nginx: bool,
        /// Over HTTPS: the nodes (and nginx) serve TLS with certificates of
        /// a CA made for the run, and the clients speak TLS.
        #[arg(long)]
        tls: bool,
        /// Seconds per run.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Size of the file read, MiB.
        #[arg(long, default_value_t = 64)]
        file_mb: u32,
        /// Directory for the cluster and library (temporary by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// What the control plane costs each node of a serving cluster: bus
    /// and ring bytes sent and received per node per second, read from
    /// every node's /metrics over the window. The last line is JSON.
    Traffic {
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 48)]
        nodes: u32,
        /// Seconds measured (after a 5 s warm-up).
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Streams playing at once (restarted as they end).
        #[arg(long, default_value_t = 8)]
        streams: u32,
        /// Directory for the cluster, library and logs (temporary by default).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Concurrent HLS players fetching a rendition's segments through
    /// ringcast and, with --vs-nginx, from nginx, in alternating runs.
    Segments(bench_segments::SegmentsArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Writes a first cluster file for this machine: one node on 127.0.0.1
    /// with a fresh key and admin token (cluster.toml, cluster.key,
    /// admin.token), to edit into a real cluster (docs/deploy.md).
    Init {
        /// The folder to write into, e.g. /etc/ringcast.
        #[arg(long)]
        dir: PathBuf,
        /// Nodes in the cluster (all on this machine).
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        /// The bus port; node i rings on base + i and serves HTTP on
        /// base + nodes + i.
        #[arg(long, default_value_t = 7400)]
        base_port: u16,
        /// Replace a cluster file that is already there (its key and token too).
        #[arg(long)]
        force: bool,
    },
    /// Validates a cluster file; prints each problem as file:line.
    Check {
        /// The cluster file.
        file: PathBuf,
        /// Also ask every node the file lists what it runs (with the file's
        /// admin token), and refuse changes a reload cannot apply.
        #[arg(long)]
        against_running: bool,
    },
    /// Serves each node its configuration: over TLS, to the holder of
    /// that node's certificate only, signed (--tls-dir); or over plain HTTP
    /// on loopback.
    Serve {
        /// The cluster file.
        file: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7300")]
        listen: SocketAddr,
        /// The service's credentials: a folder with ca.crt, service.crt,
        /// service.key and config-signing.key.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// Serve plain HTTP on an address other hosts reach: anyone there
        /// then gets every node's keys. For a trusted network only.
        #[arg(long, conflicts_with = "tls_dir")]
        insecure_plain_http: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CredentialsCommand {
    /// Writes the credentials of every node of a cluster file into a folder.
    Init {
        /// The cluster file whose nodes get certificates.
        #[arg(long)]
        config: PathBuf,
        /// The folder to write (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// A host name or IP address nodes reach the configuration service
        /// at; repeat for several.
        #[arg(long = "service-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        service_names: Vec<String>,
        /// Replace the credentials the folder holds.
        #[arg(long)]
        force: bool,
    },
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line (timestamp, level, fields, target).
    Json,
    /// Structured fields to the systemd journal (`journalctl -u ringcast`).
    Journal,
}

impl LogFormat {
    /// The value of `--log-format` that selects this format.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
            LogFormat::Journal => "journal",
        }
    }
}

/// The variables that set the log level, first found wins.
const LOG_ENV: [&str; 2] = ["RINGCAST_LOG", "RUST_LOG"];

fn init_logs(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let directives = LOG_ENV
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|d| !d.trim().is_empty()));
    let filter = match directives {
        Some(d) => tracing_subscriber::EnvFilter::try_new(&d).unwrap_or_else(|e| {
            eprintln!("ringcast: ignoring the log level {d:?} ({e}); using info");
            tracing_subscriber::EnvFilter::new("info")
        }),
        None => tracing_subscriber::EnvFilter::new("info"),
    };
    if format == LogFormat::Journal {
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal.with_syslog_identifier("ringcast".into()))
                    .init();
                return;
            }
            Err(e) => eprintln!(
                "ringcast: cannot reach the systemd journal ({e}); logging to standard error"
            ),
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text | LogFormat::Journal => builder.init(),
    }
}

/// Whether standard error is the systemd journal's stream: systemd sets
/// `$JOURNAL_STREAM` to its device and inode (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (dev, ino) = v.split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Writes to standard output. Returns false when the reader went away
/// (`| head`), which ends a command quietly rather than as an error.
pub(crate) fn print_out(text: &str) -> Result<bool> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("ringcast: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(ca) = &cli.cacert {
        http::trust(ca)?;
    }
    let log_format = match (cli.log_format, cli.log_json) {
        (Some(f), _) => f,
        (None, true) => LogFormat::Json,
        (None, false) if stderr_is_journal() => LogFormat::Journal,
        (None, false) => LogFormat::Text,
    };
    match cli.command {
        Command::Up {
            nodes,
            shape,
            dir,
            library,
        } => {
            let layout = match shape {
                Some(s) => up_cmd::Layout::Shape(
                    clusterfile::parse_shape(&s)
                        .map_err(|e| anyhow::anyhow!("--shape {s}: {e}"))?,
                ),
                None => up_cmd::Layout::Nodes(nodes),
            };
            let library = match library {
                Some(p) if !p.is_dir() => bail!("--library {} is not a folder", p.display()),
                Some(p) => up_cmd::Library::Dir(p),
                None => up_cmd::Library::Embedded,
            };
            up_cmd::run(&layout, dir.as_deref(), &library, log_format)
        }
        Command::Node {
            config,
            config_url,
            cache_dir,
            credentials,
            node,
            state_dir,
        } => {
            init_logs(log_format);
            let id = node_cmd::check_id(node)?;
            let source = match (config, config_url) {
                (Some(f), None) => node_cmd::Source::File(f),
                (None, Some(url)) => node_cmd::Source::url(url, cache_dir, credentials, id)?,
                _ => bail!("give --config FILE or --config-url URL"),
            };
            let state = state_dir.unwrap_or_else(|| node_cmd::state_dir(&source));
            node_cmd::run(node_cmd::settings(&source, id)?, state, source)
        }
        Command::Status {
            target,
            json,
            no_follow,
        } => {
            if let Some(tree) = target
                .config
                .as_deref()
                .map(status_cmd::fetch_tree)
                .transpose()?
                .flatten()
            {
                if json {
                    print_out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&tree.json())?
                    ))?;
                } else {
                    print_out(&tree.table())?;
                }
                return Ok(());
            }
            let targets = target.bases()?;
            let view = status_cmd::fetch(&targets, !no_follow)?;
            if json {
                print_out(&format!("{}\n", serde_json::to_string_pretty(&view)?))?;
            } else {
                print_out(&status_cmd::table(&view))?;
            }
            Ok(())
        }
        Command::Events { target, json } => status_cmd::follow_events(&target.bases()?, json),
        Command::Drain {
            node,
            target,
            token_file,
            wait_seconds,
        } => {
            let t = target.admin(node, token_file.as_ref())?;
            drain_cmd::drain(node, &t, std::time::Duration::from_secs(wait_seconds))
        }
        Command::Undrain {
            node,
            target,
            token_file,
        } => drain_cmd::undrain(node, &target.admin(node, token_file.as_ref())?),
        Command::Credentials {
            command:
                CredentialsCommand::Init {
                    config,
                    dir,
                    service_names,
                    force,
                },
        } => credentials_cmd::init(&config, &dir, &service_names, force),
        Command::Completions { shell } => {
            manual_cmd::completions(shell, &mut std::io::stdout().lock())
        }
        Command::Man { out } => {
            let pages = manual_cmd::man_pages(&out)?;
            println!("{} manual pages written to {}", pages, out.display());
            Ok(())
        }
        Command::Config { command } => match command {
            ConfigCommand::Init {
                dir,
                nodes,
                base_port,
                force,
            } => {
                let file = manual_cmd::init_cluster(&dir, nodes, base_port, force)?;
                println!(
                    "{}: a cluster of {nodes} node(s) on 127.0.0.1, HTTP from port {}; \
                     key and admin token beside it",
                    file.display(),
                    u32::from(base_port) + nodes + 1
                );
                Ok(())
            }
            ConfigCommand::Check {
                file,
                against_running,
            } => check_cmd::run(&file, against_running),
            ConfigCommand::Serve {
                file,
                listen,
                tls_dir,
                insecure_plain_http,
            } => {
                init_logs(log_format);
                clusterfile::load(&file)?;
                if tls_dir.is_none() && !insecure_plain_http && !listen.ip().is_loopback() {
                    bail!(
                        "--listen {listen} is reachable from other hosts, and plain HTTP would hand every node's keys to anyone there: give --tls-dir DIR (ringcast credentials init makes it) or --insecure-plain-http"
                    );
                }
                let credentials = tls_dir
                    .as_deref()
                    .map(ringcast_config::credentials::ServiceCredentials::load)
                    .transpose()?;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                rt.block_on(async {
                    let listener = tokio::net::TcpListener::bind(listen)
                        .await
                        .with_context(|| format!("cannot listen on {listen}"))?;
                    match credentials {
                        Some(c) => {
                            eprintln!(
                                "serving {} on https://{listen} to holders of a node certificate",
                                file.display()
                            );
                            service::serve_tls(file, listener, c).await?;
                        }
                        None => {
                            eprintln!("serving {} on http://{listen}", file.display());
                            service::serve(file, listener).await?;
                        }
                    }
                    Ok(())
                })
            }
        },
        Command::Play {
            url,
            out,
            max_rate,
            plain,
        } => {
            let (path, parts) = play_cmd::run(&play_cmd::PlayOptions {
                url,
                out,
                max_rate,
                plain,
            })?;
            let total: u64 = parts.iter().map(|p| p.len).sum();
            println!("{}: {total} bytes, length and ETag checked", path.display());
            for p in &parts {
                println!("  bytes {}..{} from {}", p.start, p.start + p.len, p.from);
            }
            Ok(())
        }
        Command::Bench { command } => match command {
            BenchCommand::Failover {
                nodes,
                trials,
                dir,
                json,
            } => {
                let report = bench_cmd::failover(nodes, trials, dir.as_deref(), json)?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Soak {
                minutes,
                nodes,
                streams,
                hog_threads,
                dir,
            } => {
                let report = bench_soak::soak(&bench_soak::SoakOptions {
                    minutes,
                    nodes,
                    streams,
                    hog_threads,
                    dir,
                })?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Stream {
                clients,
                vs_nginx,
                tls,
                seconds,
                file_mb,
                dir,
                json: _,
            } => {
                let report = bench_stream::stream(&bench_stream::StreamBenchOptions {
                    clients,
                    vs_nginx,
                    seconds,
                    file_mb,
                    dir,
                    tls,
                })?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Traffic {
                nodes,
                seconds,
                streams,
                dir,
            } => {
                let report = bench_traffic::traffic(&bench_traffic::TrafficOptions {
                    nodes,
                    seconds,
                    streams,
                    dir,
                })?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Segments(args) => {
                let report = bench_segments::segments(&args)?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
        },
        Command::Demo { nodes, seed } => {
            if !(3..=64).contains(&nodes) {
                bail!("--nodes must be between 3 and 64, not {nodes}");
            }
            for line in ringcast_sim::demo::run(seed, nodes) {
                println!("{line}");
            }
            Ok(())
        }
    }
}
