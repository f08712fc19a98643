//! nginx for the benchmarks that compare with it (`bench stream`, `bench
//! segments`): installed from Debian when missing, started on a free
//! loopback port with sendfile on (and TLS with the given certificate),
//! in its own process group, stopped when dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{geteuid, Pid};

use crate::bench_interrupt::check_interrupted;

/// The nginx executable, installed from Debian when missing and we are root.
pub(crate) fn ensure_nginx() -> Result<PathBuf> {
    if let Some(p) = find_nginx() {
        return Ok(p);
    }
    if !geteuid().is_root() {
        bail!(
            "nginx is not installed; install it (Debian: `sudo apt-get install -y nginx`) \
             and run the bench again, or leave out --vs-nginx"
        );
    }
    eprintln!("nginx: not installed; installing it from Debian (apt-get install -y nginx) ...");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let mut out = install().context("cannot run apt-get")?;
    if !out.status.success() {
        // Fresh machines have no package lists yet.
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdin(Stdio::null())
            .output();
        out = install().context("cannot run apt-get")?;
    }
    if !out.status.success() {
        bail!(
            "apt-get install nginx failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    find_nginx().context("apt-get installed nginx but no nginx executable was found")
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

pub(crate) fn nginx_version(exe: &Path) -> String {
    Command::new(exe)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .strip_prefix("nginx version: ")
                .map(|v| v.replace('/', " "))
        })
        .unwrap_or_else(|| "nginx".to_string())
}

/// An nginx serving the library folder in the foreground as our child; it
/// is stopped (and its workers with it) when dropped, also on errors.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
    /// `https` with TLS.
    pub(crate) scheme: &'static str,
}

impl Nginx {
    /// Starts nginx serving `root` and waits until `GET ready` (a path)
    /// answers 200 with `size` bytes.
    pub(crate) fn start(
        exe: &Path,
        dir: &Path,
        root: &Path,
        ready: &str,
        size: u64,
    ) -> Result<Nginx> {
        Nginx::start_tls(exe, dir, root, ready, size, None)
    }

    /// [`Nginx::start`] over TLS with `tls` (certificate chain and key
    /// files) when given.
    pub(crate) fn start_tls(
        exe: &Path,
        dir: &Path,
        root: &Path,
        ready: &str,
        size: u64,
        tls: Option<(&Path, &Path)>,
    ) -> Result<Nginx> {
        for sub in ["", "tmp"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for nginx")?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let d = dir.display();
        // As root nginx would hand requests to workers running as nobody,
        // who may not read the bench folder; the nodes run as us, so do they.
        let user = if geteuid().is_root() {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "# written by ringcast bench stream\n\
             {user}daemon off;\n\
             master_process on;\n\
             worker_processes auto;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 2048; }}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   sendfile on;\n\
             \x20   tcp_nopush on;\n\
             \x20   keepalive_requests 100000;\n\
             \x20   types {{ video/mp4 mp4; application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}\n\
             \x20   default_type application/octet-stream;\n\
             \x20   client_body_temp_path {d}/tmp/body;\n\
             \x20   proxy_temp_path {d}/tmp/proxy;\n\
             \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
             \x20   scgi_temp_path {d}/tmp/scgi;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port}{ssl};\n\
             {certificate}\
             \x20       root {root};\n\
             \x20   }}\n\
             }}\n",
            root = root.display(),
            ssl = if tls.is_some() { " ssl" } else { "" },
            certificate = match tls {
                Some((cert, key)) => format!(
                    "        ssl_certificate {};\n        ssl_certificate_key {};\n        ssl_protocols TLSv1.2 TLSv1.3;\n",
                    cert.display(),
                    key.display()
                ),
                None => String::new(),
            },
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)
            .with_context(|| format!("cannot write {}", conf_path.display()))?;
        let log = dir.join("nginx.out");
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        let err = out.try_clone().context("cannot share the log file")?;
        let child = Command::new(exe)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group: its workers can be found and stopped with it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut nginx = Nginx {
            child,
            addr,
            dir: dir.to_path_buf(),
            scheme: if tls.is_some() { "https" } else { "http" },
        };
        nginx.wait_ready(ready, size)?;
        Ok(nginx)
    }

    /// Until a full download of `ready` works (which also warms it up).
    fn wait_ready(&mut self, ready: &str, size: u64) -> Result<()> {
        let url = format!("{}://{}{ready}", self.scheme, self.addr);
        let deadline = Instant::now() + Duration::from_secs(15);
        let agent = crate::http::builder()
            .timeout(Duration::from_secs(10))
            .build();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("nginx exited ({status}) at startup: {}", self.logs().trim());
            }
            let last = match full_length(&agent, &url) {
                Ok(n) if n == size => return Ok(()),
                Ok(n) => anyhow::anyhow!("{n} bytes, not {size}"),
                Err(e) => e,
            };
            check_interrupted()?;
            if Instant::now() > deadline {
                bail!(
                    "nginx did not serve {url} within 15 s: {last:#}; its logs: {}",
                    self.logs().trim()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        ["nginx.out", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        // SIGQUIT would wait for downloads in flight; SIGTERM is nginx's fast shutdown.
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The master did not stop: kill it and its workers (its own group).
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body length of a whole `GET url`.
fn full_length(agent: &ureq::Agent, url: &str) -> Result<u64> {
    let response = agent
        .get(url)
        .call()
        .with_context(|| format!("cannot read {url}"))?;
    std::io::copy(&mut response.into_reader(), &mut std::io::sink())
        .with_context(|| format!("the body of {url} broke"))
}
