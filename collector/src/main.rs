//! The `tenantscope` binary: parse the command line, set up logging, hand over to the library,
//! map the outcome to an exit code (0 success, 1 failure, 2 usage or configuration error; for
//! `verify`: 0 intact, 1 tampered, 2 could not run).

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
        Some(Command::Query(args)) => query(&args),
        Some(Command::Verify(args)) => verify(&args),
        Some(Command::Keygen(args)) => keygen(&args),
        Some(Command::Export(args)) => export(&args),
        Some(Command::Retention(args)) => retention(&args),
        Some(Command::HashKey) => hash_key(),
        Some(Command::Config(ConfigCommand::Check { file })) => config_check(&file),
    }
}

fn query(args: &cli::QueryArgs) -> ExitCode {
    let _ = telemetry::init_tracing(LogFormat::Text, "warn", None);
    let result = runtime().and_then(|rt| {
        rt.block_on(cli::query(
            args,
            &mut std::io::BufWriter::new(std::io::stdout()),
        ))
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn verify(args: &cli::audit::VerifyArgs) -> ExitCode {
    tune_malloc();
    let _ = telemetry::init_tracing(LogFormat::Text, "warn", None);
    let mut out = std::io::BufWriter::new(std::io::stdout());
    match cli::audit::verify(args, &mut out) {
        Ok(intact) => {
            use std::io::Write as _;
            let _ = out.flush();
            if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: verify could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn keygen(args: &cli::audit::KeygenArgs) -> ExitCode {
    match cli::audit::keygen(args) {
        Ok(verifier_key) => {
            println!(
                "private key: {} (mode 0600)\npublic key:  {} ({verifier_key})",
                args.private.display(),
                args.public.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn export(args: &cli::audit::ExportArgs) -> ExitCode {
    let _ = telemetry::init_tracing(LogFormat::Text, "warn", None);
    match cli::audit::export(args) {
        Ok(summary) => {
            println!(
                "{}: {} files ({} bytes), the log of {} entries, its checkpoint and proofs",
                args.output.display(),
                summary.files,
                summary.bytes,
                summary.tree_size
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn retention(args: &cli::audit::RetentionArgs) -> ExitCode {
    let _ = telemetry::init_tracing(LogFormat::Text, "warn", None);
    match cli::audit::retention(args, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_key() -> ExitCode {
    match cli::hash_key(&mut std::io::stdin().lock(), &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn config_check(file: &std::path::Path) -> ExitCode {
    match cli::config_check(file) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// For `verify`: glibc's malloc serves blocks over its mmap threshold (128 KiB, adapting up to
/// 32 MiB) with their own mappings and trims the heap's top beyond 128 KiB free, so every Parquet
/// column buffer `verify` decodes was mapped, zeroed by the kernel a page at a time, and unmapped
/// again: half of its CPU time went to page faults. Fixed limits keep such buffers in the heap
/// for reuse (BENCHMARKS.md, "verify's speed"). Not for the daemon, whose growing buffers gain
/// from `mremap` (measured: no gain on ingest). A `GLIBC_TUNABLES` naming either parameter wins.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        // SAFETY: mallopt only changes allocator parameters; it is called before verify starts
        // any thread.
        unsafe {
            if !tunables.contains("mmap_threshold") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            }
            if !tunables.contains("trim_threshold") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    // Where transparent huge pages are on for every mapping (`always`, the default of some
    // distributions), each 2 MiB of heap touched is resident (and zeroed) whole. The daemon's
    // heap is small and churns; it gains nothing from them.
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("note: cannot disable transparent huge pages: {error}");
    }
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            // Inside the runtime: the span exporter's gRPC channel needs it.
            let tracing = match telemetry::init_tracing(
                config.log.format,
                &config.log.level,
                Some(&config.tracing),
            ) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(Err(ExitCode::from(2)));
                }
            };
            telemetry::log_panics();
            let result = app::run(config, args.config.clone(), tracing.flusher()).await;
            tokio::task::spawn_blocking(move || tracing.shutdown())
                .await
                .ok();
            Ok(Ok(result))
        })
    });
    let result = match result {
        Ok(Ok(result)) => result,
        Ok(Err(code)) => return code,
        Err(e) => Err(e),
    };
    match result {
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
