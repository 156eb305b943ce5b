//! imrelay: the daemon is the next milestone; this binary says so rather
//! than pretending.

fn main() {
    eprintln!("imrelay: the daemon is not built yet (see README.md). The simulator runs with: cargo run --release -p rcsim -- --seed demo");
    std::process::exit(2);
}
