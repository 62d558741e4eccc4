//! `candor store`: offline maintenance of a member's embedded store.
//!
//! The member must be stopped: the store allows one process at a time, and a
//! running member's store is refused with a message saying so. `usage` prints
//! where the disk goes (live table files per space, the journal, the rest);
//! `compact` flushes every space and compacts it fully (what background
//! compaction does lazily), then prints the usage before and after. Useful
//! after a bulk load, and how docs/performance.md measures bytes per
//! label-version "after compaction".

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candor_store::{DiskUsage, FjallConfig, FjallStore, Space};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Bytes on disk: live table files per space, the journal, the rest.
    Usage(StoreDirArgs),
    /// Flush and fully compact every space (the member must be stopped), then
    /// print the usage before and after.
    Compact(StoreDirArgs),
}

#[derive(Debug, Args)]
pub struct StoreDirArgs {
    /// The stopped member's data directory (`candor dev --data-dir`, or
    /// `data_dir` of `candor serve`); the store is its `store/` directory.
    #[arg(long, default_value = "candor-data")]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What one look at the store found.
struct Usage {
    spaces: [(Space, u64); Space::ALL.len()],
    disk: DiskUsage,
}

impl Usage {
    fn of(store: &FjallStore) -> Result<Usage> {
        Ok(Usage {
            spaces: store.space_table_bytes(),
            disk: store.disk_usage().context("reading the store directory")?,
        })
    }

    fn json(&self) -> serde_json::Value {
        let spaces: serde_json::Map<String, serde_json::Value> = self
            .spaces
            .iter()
            .map(|(s, b)| (s.name().to_owned(), (*b).into()))
            .collect();
        serde_json::json!({
            "live_table_bytes": spaces,
            "table_files_bytes": self.disk.table_bytes,
            "journal_bytes": self.disk.journal_bytes,
            "other_bytes": self.disk.other_bytes,
            "total_bytes": self.disk.total(),
        })
    }

    fn table(&self, title: &str) -> String {
        let mut out = format!("{title}\n");
        for (s, b) in &self.spaces {
            out += &format!("  {:<26}{b:>16}\n", format!("space {}", s.name()));
        }
        let live: u64 = self.spaces.iter().map(|(_, b)| b).sum();
        let stale = self.disk.table_bytes.saturating_sub(live);
        out += &format!("  {:<26}{stale:>16}\n", "replaced tables (not yet deleted)");
        out += &format!("  {:<26}{:>16}\n", "journal", self.disk.journal_bytes);
        out += &format!("  {:<26}{:>16}\n", "other", self.disk.other_bytes);
        out += &format!(
            "  {:<26}{:>16}\n",
            "total (allocated bytes)",
            self.disk.total()
        );
        out
    }
}

fn open(data_dir: &Path) -> Result<FjallStore> {
    let dir = data_dir.join("store");
    // Opening creates a store where none is: check first, so a typo does not
    // leave an empty store behind.
    if !dir.join("version").is_file() {
        bail!(
            "no store at {} (give the data directory of a member: candor dev --data-dir, \
             or data_dir of candor serve)",
            dir.display()
        );
    }
    FjallStore::open_with(&dir, FjallConfig::default()).with_context(|| {
        format!(
            "cannot open the store at {} (is the member still running? stop it first)",
            dir.display()
        )
    })
}

pub fn run(args: StoreArgs) -> Result<()> {
    match args.command {
        StoreCommand::Usage(a) => {
            let store = open(&a.data_dir)?;
            let u = Usage::of(&store)?;
            if a.json {
                println!("{}", u.json());
            } else {
                print!(
                    "{}",
                    u.table(&format!("{} (bytes)", store.path().display()))
                );
            }
        }
        StoreCommand::Compact(a) => {
            let store = open(&a.data_dir)?;
            let before = Usage::of(&store)?;
            store.flush_and_compact().context("compacting the store")?;
            drop(store);
            // Reopened: recovery deletes the table files the compaction replaced.
            let store = open(&a.data_dir)?;
            let after = Usage::of(&store)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({ "before": before.json(), "after": after.json() })
                );
            } else {
                print!("{}", before.table("before (bytes)"));
                print!("{}", after.table("after compaction (bytes)"));
            }
        }
    }
    Ok(())
}
