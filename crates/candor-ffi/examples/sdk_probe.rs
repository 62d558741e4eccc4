//! The plain Rust SDK (candor-client, no bindings) answering the same calls
//! as the Python tests, as JSON on stdout: the reference the Python results
//! are compared with, and the Rust side of the verified-lookups benchmark.
//!
//! ```text
//! sdk_probe TARGET CONFIG_BIN lookup EPOCH LABEL...
//! sdk_probe TARGET CONFIG_BIN history EPOCH LABEL...
//! sdk_probe TARGET CONFIG_BIN bench SECONDS LABEL...
//! sdk_probe - - contact-code LABEL_A KEY_A LABEL_B KEY_B
//! sdk_probe - CONFIG_BIN verify-bench SECONDS LABEL EPOCH HEAD_HEX PROOF_HEX
//! ```
//!
//! `verify-bench` verifies one raw lookup response (signed head and proof
//! bytes) over and over, no network: the client-side cost alone.
//!
//! Labels and keys are UTF-8 arguments; bytes are printed as hex.

use std::time::{Duration, Instant};

use anyhow_free::{Error, bail};
use candor_client::{Client, PinnedConfig};
use serde_json::{Value, json};

/// A tiny stand-in for anyhow (not a dependency of this crate).
mod anyhow_free {
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    macro_rules! bail {
        ($($t:tt)*) => { return Err(format!($($t)*).into()) };
    }
    pub(crate) use bail;
}

fn opt_hex(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| Value::String(hex::encode(b)))
}

async fn connect(target: &str, config: &str) -> Result<Client, Error> {
    let bytes = std::fs::read(config)?;
    Ok(Client::connect(target.to_owned(), PinnedConfig::from_config_bytes(&bytes)?).await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: sdk_probe TARGET CONFIG_BIN (lookup|history|bench|contact-code) ...");
    }
    let (target, config, cmd, rest) = (&args[0], &args[1], args[2].as_str(), &args[3..]);
    let out = match cmd {
        "contact-code" => {
            let [la, ka, lb, kb] = rest else {
                bail!("contact-code LABEL_A KEY_A LABEL_B KEY_B");
            };
            json!(candor_client::contact_code(
                la.as_bytes(),
                ka.as_bytes(),
                lb.as_bytes(),
                kb.as_bytes()
            ))
        }
        "verify-bench" => {
            let [secs, label, epoch, head, proof] = rest else {
                bail!("verify-bench SECONDS LABEL EPOCH HEAD_HEX PROOF_HEX");
            };
            let config = match PinnedConfig::from_config_bytes(&std::fs::read(config)?)? {
                PinnedConfig::Config(c) => *c,
                PinnedConfig::Digest(_) => bail!("verify-bench needs the configuration"),
            };
            let resp = candor_proto::candor::v1::LookupResponse {
                signed_head: hex::decode(head)?,
                proof: hex::decode(proof)?,
                ..Default::default()
            };
            let epoch: u64 = epoch.parse()?;
            let budget = Duration::from_secs_f64(secs.parse()?);
            let start = Instant::now();
            let mut done: u64 = 0;
            while start.elapsed() < budget {
                candor_client::verify::lookup(&config, label.as_bytes(), Some(epoch), &resp)?;
                done += 1;
            }
            let elapsed = start.elapsed().as_secs_f64();
            json!({"verifications": done, "seconds": elapsed, "per_second": done as f64 / elapsed})
        }
        "lookup" | "history" | "bench" => {
            let Some((n, labels)) = rest.split_first() else {
                bail!("{cmd} needs a number and labels");
            };
            let client = connect(target, config).await?;
            match cmd {
                "lookup" => {
                    let epoch: u64 = n.parse()?;
                    let mut v = Vec::new();
                    for l in labels {
                        let r = client.lookup(l.as_bytes(), Some(epoch)).await?;
                        let e = r.entry.as_ref();
                        v.push(json!({
                            "label": l,
                            "epoch": r.epoch(),
                            "map_root": hex::encode(r.head.head.map_root),
                            "index": hex::encode(r.index),
                            "found": r.is_found(),
                            "version": r.version(),
                            "value": opt_hex(r.value()),
                            "leaf_hash": opt_hex(e.map(|e| e.leaf_hash.as_slice())),
                            "commitment": opt_hex(e.map(|e| e.leaf.commitment.as_slice())),
                        }));
                    }
                    Value::Array(v)
                }
                "history" => {
                    let epoch: u64 = n.parse()?;
                    let mut v = Vec::new();
                    for l in labels {
                        let h = client.history_at(l.as_bytes(), Some(epoch)).await?;
                        v.push(json!({
                            "label": l,
                            "epoch": h.epoch(),
                            "index": hex::encode(h.index()),
                            "latest_version": h.latest_version(),
                            "versions": h.versions().iter().map(|x| json!({
                                "version": x.version,
                                "value": opt_hex(x.value.as_deref()),
                                "leaf_hash": hex::encode(x.leaf_hash),
                                "commitment": hex::encode(x.leaf.commitment),
                            })).collect::<Vec<_>>(),
                        }));
                    }
                    Value::Array(v)
                }
                _ => {
                    // Sequential verified lookups at the latest epoch, the
                    // same loop the Python benchmark runs.
                    let secs: f64 = n.parse()?;
                    if labels.is_empty() {
                        bail!("bench needs labels");
                    }
                    let budget = Duration::from_secs_f64(secs);
                    let start = Instant::now();
                    let mut done: u64 = 0;
                    while start.elapsed() < budget {
                        let l = &labels[(done as usize) % labels.len()];
                        let r = client.lookup(l.as_bytes(), None).await?;
                        if !r.is_found() {
                            bail!("{l} not found");
                        }
                        done += 1;
                    }
                    let elapsed = start.elapsed().as_secs_f64();
                    json!({
                        "lookups": done,
                        "seconds": elapsed,
                        "per_second": done as f64 / elapsed,
                    })
                }
            }
        }
        other => bail!("unknown command {other}"),
    };
    println!("{out}");
    Ok(())
}
