// Lets binaries and tests find libduckdb.so where it was linked from (DUCKDB_LIB_DIR), without
// LD_LIBRARY_PATH. Without DUCKDB_LIB_DIR (e.g. the `bundled` feature) nothing is added.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
