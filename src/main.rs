//! The flux-recv binary: flags in, server out. Everything else is in the
//! library, where the tests can reach it.

fn main() -> std::process::ExitCode {
    flux_recv::cli::main()
}
