//! What an installed `ringcast` brings besides itself: its manual pages and
//! shell completions, made from the command line's own definition so they
//! never drift from it, and a first cluster file for a machine that has none.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use ringcast_config::clusterfile;

/// Writes the completion script of `shell` for `ringcast` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<()> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "ringcast", out);
    out.flush().context("cannot write the completion script")
}

/// Writes one manual page per command (`ringcast.1`, `ringcast-node.1`,
/// `ringcast-config-check.1`, ...) into `out`; returns how many.
pub fn man_pages(out: &Path) -> Result<usize> {
    fn write(cmd: clap::Command, out: &Path) -> Result<usize> {
        let mut pages = 0;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            pages += write(sub, out)?;
        }
        let page = clap_mangen::Man::new(cmd);
        let path = out.join(page.get_filename());
        page.generate_to(out)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(pages + 1)
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, out)
}

/// Writes a cluster file of `nodes` nodes on 127.0.0.1 from `base_port`
/// into `dir`, with a fresh key and admin token. An existing cluster file
/// is kept unless `force`: its key is what the running nodes share.
pub fn init_cluster(dir: &Path, nodes: u32, base_port: u16, force: bool) -> Result<PathBuf> {
    let file = dir.join("cluster.toml");
    if file.exists() && !force {
        bail!(
            "{} already exists; it is kept (give --force to replace it, its key and its admin token)",
            file.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(clusterfile::local_cluster(dir, nodes, Some(base_port))?)
}
