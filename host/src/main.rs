//! The `trellis` binary: parses the command line and hands over to the library.

use clap::Parser;
use std::process::ExitCode;
use trellis::cli::{
    Cli, Command, CrdKind, PluginCommand, run_compile, run_init, run_pack, run_push, run_render, run_status, run_test,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Render(args) => {
            offline_logs();
            run_render(args).map_err(Into::into)
        }
        Command::Init(args) => run_init(args).map_err(Into::into),
        Command::Test(args) => {
            offline_logs();
            run_test(args).map_err(Into::into)
        }
        Command::Plugin(PluginCommand::Pack(args)) => {
            offline_logs();
            run_pack(args).map_err(Into::into)
        }
        Command::Plugin(PluginCommand::Push(args)) => {
            offline_logs();
            run_push(args).map_err(Into::into)
        }
        Command::Plugin(PluginCommand::Compile(args)) => {
            offline_logs();
            run_compile(args).map_err(Into::into)
        }
        Command::Status(args) => {
            offline_logs();
            run_status(args)
        }
        Command::Crd { kind } => {
            let cluster = trellis::crd::cluster_crd_yaml();
            let tenant = trellis::crd::tenant_crd_yaml();
            match kind {
                Some(CrdKind::Cluster) => print!("{cluster}"),
                Some(CrdKind::Tenant) => print!("{tenant}"),
                None => print!("---\n{cluster}---\n{tenant}"),
            }
            Ok(())
        }
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(log_filter("info"))
                .with_writer(std::io::stderr)
                .init();
            trellis::run::RunOptions::try_from(*args)
                .map_err(Into::into)
                .and_then(|options| {
                    tokio::runtime::Runtime::new()
                        .map_err(Into::into)
                        .and_then(|rt| rt.block_on(trellis::run::run(options)).map_err(Into::into))
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `TRELLIS_LOG`, or `default`.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG").unwrap_or_else(|_| default.into())
}

/// Warnings as text on stderr, for the commands that print their result
/// on stdout.
fn offline_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter("warn"))
        .with_writer(std::io::stderr)
        .init();
}
