//! `agentsim-runtime`: one thread of the lifecycle, run for real against a backend (for example
//! `sim serve`), by hand or by script. See README's "Trying it for real" and [`agentsim_runtime::cli`].

fn main() -> std::process::ExitCode {
    agentsim_runtime::cli::main_with(std::env::args_os())
}
