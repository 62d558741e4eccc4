//! A simple load loop against a running `candor dev`: `N` verified
//! publishes (one per call, or `B` per PublishBatch call), then `N` verified
//! lookups, by `C` concurrent SDK clients (each a sequential loop). Not the benchmark (`candor bench`); a quick
//! figure for the README.
//!
//! ```text
//! cargo run --release -p candor --example simple_loop -- \
//!     http://127.0.0.1:8700 ./candor-data 2000 8 [B]
//! ```

use std::time::Instant;

use candor_client::{Client, PinnedConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let target = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8700".into());
    let data = std::path::PathBuf::from(
        args.get(2)
            .cloned()
            .unwrap_or_else(|| "./candor-data".into()),
    );
    let n: usize = args.get(3).map_or(Ok(1000), |s| s.parse())?;
    let c: usize = args.get(4).map_or(Ok(1), |s| s.parse())?;
    let b: usize = args.get(5).map_or(Ok(1), |s| s.parse())?.max(1);
    let pin = PinnedConfig::from_config_bytes(&std::fs::read(data.join("config.bin"))?)?;
    let token = std::fs::read_to_string(data.join("dev-token"))?
        .trim()
        .to_owned();
    let run_id = candor_client::new_idempotency_key();

    let mut clients = Vec::new();
    for _ in 0..c {
        clients.push(
            Client::connect(target.clone(), pin.clone())
                .await?
                .with_token(&token)?,
        );
    }
    let per = n / c;

    let t = Instant::now();
    let mut tasks = Vec::new();
    for (w, client) in clients.iter().cloned().enumerate() {
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            let labels: Vec<String> = (0..per).map(|i| format!("loop-{run_id}-{w}-{i}")).collect();
            for chunk in labels.chunks(b) {
                if b == 1 {
                    client.publish(chunk[0].as_bytes(), b"value").await?;
                } else {
                    let items: Vec<_> = chunk
                        .iter()
                        .map(|l| {
                            candor_client::PublishItem::new(
                                l.as_bytes().to_vec(),
                                b"value".to_vec(),
                            )
                        })
                        .collect();
                    client.publish_batch(&items).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "publish: {} verified in {secs:.2} s = {:.0}/s ({c} client(s))",
        per * c,
        (per * c) as f64 / secs
    );

    // Wait until the last label is in a signed epoch, then look them all up.
    let last = format!("loop-{run_id}-{}-{}", c - 1, per - 1);
    while !clients[0].lookup(last.as_bytes(), None).await?.is_found() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (w, client) in clients.iter().cloned().enumerate() {
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let label = format!("loop-{run_id}-{w}-{i}");
                let v = client.lookup(label.as_bytes(), None).await?;
                anyhow::ensure!(v.is_found(), "label {label} missing");
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "lookup:  {} verified in {secs:.2} s = {:.0}/s ({c} client(s))",
        per * c,
        (per * c) as f64 / secs
    );
    Ok(())
}
