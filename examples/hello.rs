// Hello in Rust: warden run examples/hello.rs
fn main() {
    println!("hello from Rust");
}
