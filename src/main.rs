//! `nas`: the command line of nasrs.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_broken_pipe();
    nasrs::latency::steady_allocator();
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, leaving out a cause whose text the message already contains
/// (nasrs errors quote their I/O cause next to the file name).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Restores the default action of SIGPIPE, so that `nas ... | head` ends quietly when the
/// reader goes away, as Unix tools do, instead of panicking on the failed write.
#[cfg(unix)]
fn quiet_broken_pipe() {
    // SAFETY: setting a signal disposition to its default is async-signal-safe and done once,
    // before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_broken_pipe() {}
