//! Prints how long opening a store takes: `cargo run --release -p candor-store --example open_time -- DIR`.
fn main() {
    let dir = std::env::args().nth(1).expect("usage: open_time DIR");
    let t = std::time::Instant::now();
    let s = candor_store::FjallStore::open(&dir).expect("open");
    println!("open: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    drop(s);
    println!("drop: {:?}", t.elapsed());
}
