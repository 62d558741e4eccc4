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
use candor_store::{
    Direction, DiskUsage, FjallConfig, FjallStore, KeyRange, Space, Store, scan_pages,
};
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
    /// `usage` also reads every record: records and key + value bytes per space
    /// (before compression; takes a while on a large store).
    #[arg(long)]
    pub records: bool,
}

/// What one look at the store found.
struct Usage {
    spaces: [(Space, u64); Space::ALL.len()],
    disk: DiskUsage,
    /// With `--records`: per space, records and their key + value bytes.
    records: Option<[(u64, u64); Space::ALL.len()]>,
}

impl Usage {
    fn of(store: &FjallStore) -> Result<Usage> {
        Ok(Usage {
            spaces: store.space_table_bytes(),
            disk: store.disk_usage().context("reading the store directory")?,
            records: None,
        })
    }

    /// Reads every record of every space (one snapshot).
    fn count_records(&mut self, store: &FjallStore) -> Result<()> {
        let view = store.snapshot().context("a store snapshot")?;
        let mut out = [(0u64, 0u64); Space::ALL.len()];
        for s in Space::ALL {
            for kv in scan_pages(&*view, s, KeyRange::all(), Direction::Forward, 4096) {
                let (k, v) = kv.with_context(|| format!("reading space {}", s.name()))?;
                out[s.index()].0 += 1;
                out[s.index()].1 += (k.len() + v.len()) as u64;
            }
        }
        self.records = Some(out);
        Ok(())
    }

    fn json(&self) -> serde_json::Value {
        let spaces: serde_json::Map<String, serde_json::Value> = self
            .spaces
            .iter()
            .map(|(s, b)| (s.name().to_owned(), (*b).into()))
            .collect();
        let records: Option<serde_json::Map<String, serde_json::Value>> = self.records.map(|r| {
            Space::ALL
                .iter()
                .map(|s| {
                    let (n, b) = r[s.index()];
                    (
                        s.name().to_owned(),
                        serde_json::json!({ "records": n, "logical_bytes": b }),
                    )
                })
                .collect()
        });
        serde_json::json!({
            "records": records,
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
            out += &format!("  {:<26}{b:>16}", format!("space {}", s.name()));
            if let Some(r) = &self.records {
                let (n, lb) = r[s.index()];
                out += &format!("   {n:>12} records, {lb:>14} B of keys and values");
            }
            out += "\n";
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
            let mut u = Usage::of(&store)?;
            if a.records {
                u.count_records(&store)?;
            }
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
