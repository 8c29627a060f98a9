//! The entry point every rlhf-rs binary shares: logs to stderr (`RUST_LOG` overrides the level,
//! colours only on a terminal), runs the command, and turns a failure into one `error: ...` line
//! and exit status 1. Also every binary's help pages, for its snapshot test.

use std::io::IsTerminal;
use std::process::ExitCode;

/// A binary's `main`: parses the command line as `C`, then [`run_main`]s `run` on it.
pub fn main<C: clap::Parser>(default_level: &str, run: impl FnOnce(C) -> anyhow::Result<()>) -> ExitCode {
    let cli = C::parse();
    run_main(default_level, || run(cli))
}

/// The long help of `C` and of each of its subcommands, named `help` and `help_<subcommand>`,
/// after checking that the command line is well formed (clap's `debug_assert`).
pub fn help_pages<C: clap::CommandFactory>() -> Vec<(String, String)> {
    let mut cli = C::command();
    cli.build();
    cli.clone().debug_assert();
    let mut pages = vec![("help".to_string(), cli.render_long_help().to_string())];
    for sub in cli.get_subcommands_mut().filter(|sub| sub.get_name() != "help") {
        pages.push((format!("help_{}", sub.get_name()), sub.render_long_help().to_string()));
    }
    pages
}

/// A binary's `fn main` ([`main`] at `$level` on `$run`, which takes the binary's `Cli`) and its
/// `help` test: every help page ([`help_pages`]) is an `insta` snapshot.
#[macro_export]
macro_rules! binary_main {
    ($level:literal, $run:path) => {
        fn main() -> std::process::ExitCode {
            $crate::cli::main($level, $run)
        }

        #[cfg(test)]
        mod tests {
            #[test]
            fn help() {
                for (name, page) in $crate::cli::help_pages::<super::Cli>() {
                    insta::assert_snapshot!(name, page);
                }
            }
        }
    };
}

/// Installs the log subscriber at `default_level` and runs `command`.
pub fn run_main(default_level: &str, command: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match command() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause the text already holds.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    #[test]
    fn causes_join_on_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err =
            Err::<(), _>(io).context("a.parquet: cannot open: no such file").context("loading\ninputs").unwrap_err();
        assert_eq!(super::one_line(&err), "loading inputs: a.parquet: cannot open: no such file");
    }
}
