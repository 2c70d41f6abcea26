//! The `tenantscope` binary: parse the command line, set up logging, hand over to the library,
//! map the outcome to an exit code (0 success, 1 failure, 2 usage or configuration error).

use std::process::ExitCode;

use clap::Parser;
use tenantscope::cli::{Cli, Command, ConfigCommand, RunArgs};
use tenantscope::config::LogFormat;
use tenantscope::{app, cli, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(&cli.run),
        Some(Command::Run(args)) => run(&args),
        Some(Command::Query(args)) => {
            let _ = telemetry::init_tracing(LogFormat::Text, "warn");
            let result = runtime().and_then(|rt| {
                rt.block_on(cli::query(
                    &args,
                    &mut std::io::BufWriter::new(std::io::stdout()),
                ))
            });
            match result {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Some(Command::HashKey) => {
            match cli::hash_key(&mut std::io::stdin().lock(), &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Config(ConfigCommand::Check { file })) => match cli::config_check(&file) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init_tracing(config.log.format, &config.log.level) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match runtime().and_then(|rt| rt.block_on(app::run(config, args.config.clone()))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tenantscope failed");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}
