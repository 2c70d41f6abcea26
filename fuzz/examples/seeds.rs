//! Writes the seed corpora: `cargo run --manifest-path fuzz/Cargo.toml --example seeds [DIR]`
//! (default `fuzz/corpus`).

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/corpus").to_string());
    tenantscope_fuzz::seeds::write_all(std::path::Path::new(&dir));
    println!("seed corpora written under {dir}");
}
