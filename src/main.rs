//! The `sluice` command: `run`, `check` and `demo` (see [`sluice::cli`]).

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
