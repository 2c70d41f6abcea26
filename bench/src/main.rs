//! `tenantscope-bench`: drive an OTLP receiver with pre-built payloads and report what it did.
//!
//! ```sh
//! tenantscope-bench load --http 127.0.0.1:4318 --shape audit-v1 --connections 4 --seconds 10 \
//!     [--compression zstd] [--rate 200000] [--pid "$(pgrep -x tenantscope)"] [--json]
//! tenantscope-bench load --grpc 127.0.0.1:4317 --shape spans-v1 ...
//! tenantscope-bench shapes        # bytes per record of every shape, raw and compressed
//! ```
//! Loopback targets only, unless `--allow-remote`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use tenantscope_bench::load::{self, LoadOptions, Protocol};
use tenantscope_bench::proc_stats;
use tenantscope_bench::shapes::{Compression, Payloads, Shape};

#[derive(Parser)]
#[command(name = "tenantscope-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load to an OTLP receiver.
    Load(LoadArgs),
    /// Print the size of every payload shape.
    Shapes {
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Args)]
struct LoadArgs {
    /// OTLP/HTTP target (host:port).
    #[arg(long, conflicts_with = "grpc", required_unless_present = "grpc")]
    http: Option<SocketAddr>,
    /// OTLP/gRPC target (host:port).
    #[arg(long)]
    grpc: Option<SocketAddr>,
    #[arg(long, value_enum, default_value = "audit-v1")]
    shape: Shape,
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Records per request [default: the shape's].
    #[arg(long)]
    records: Option<usize>,
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Number the tenants from this one (`tenant-003` is 3).
    #[arg(long, default_value_t = 0)]
    first_tenant: usize,
    /// Name the tenant in `X-Scope-OrgID` too (with `--tenants 1`), so a tenant over its rate is
    /// refused before its body is read.
    #[arg(long)]
    tenant_header: bool,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Open loop at this many records per second (latency from each request's slot); without
    /// it, closed loop (a connection pauses 100 ms after a refused request).
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: resend at once after a refusal (no pause), as a misconfigured or non-OTel
    /// client does.
    #[arg(long, conflicts_with = "rate")]
    retry_at_once: bool,
    /// Distinct pre-built requests to cycle through.
    #[arg(long, default_value_t = 256)]
    bodies: usize,
    /// Spread the records over this many UTC days before today: one pre-built request per
    /// (tenant, day), cycled, so every tenant gets the same rows on every day.
    #[arg(long)]
    days: Option<u64>,
    /// Stop after this many records (rounded up to whole requests).
    #[arg(long)]
    total_records: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The receiver's pid: its CPU seconds and RSS are reported.
    #[arg(long)]
    pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Shapes { seed } => {
            let mut out = std::io::stdout().lock();
            for shape in Shape::ALL {
                let n = shape.records_per_request();
                let raw = Payloads::build(shape, 16, 100, n, Compression::None, seed);
                let zstd = Payloads::build(shape, 16, 100, n, Compression::Zstd, seed);
                let zstd_per_record =
                    zstd.http.iter().map(|b| b.len()).sum::<usize>() as f64 / (16 * n) as f64;
                // An error (a closed pipe) ends the listing instead of panicking.
                writeln!(
                    out,
                    "{:10} {n:4} records/request  {:6.1} B/record protobuf  {:6.1} B/record zstd",
                    shape.name(),
                    raw.bytes_per_record(),
                    zstd_per_record
                )?;
            }
            Ok(())
        }
        Command::Load(args) => load_command(args).await,
    }
}

async fn load_command(args: LoadArgs) -> anyhow::Result<()> {
    let (target, protocol) = match (args.http, args.grpc) {
        (Some(a), _) => (a, Protocol::Http),
        (None, Some(a)) => (a, Protocol::Grpc),
        (None, None) => anyhow::bail!("give --http or --grpc"),
    };
    anyhow::ensure!(
        target.ip().is_loopback() || args.allow_remote,
        "{target} is not a loopback address; pass --allow-remote to load it anyway"
    );
    let records = args.records.unwrap_or(args.shape.records_per_request());
    let built = Instant::now();
    let payloads = match args.days {
        Some(days) => Payloads::build_spread(
            args.shape,
            args.tenants,
            days.max(1),
            records,
            args.compression,
            args.seed,
        ),
        None => Payloads::build_from(
            args.shape,
            args.bodies,
            args.first_tenant..args.first_tenant + args.tenants.max(1),
            records,
            args.compression,
            args.seed,
        ),
    };
    let build_seconds = built.elapsed().as_secs_f64();
    let options = LoadOptions {
        target,
        protocol,
        compression: args.compression,
        connections: args.connections.max(1),
        duration: Duration::from_secs_f64(args.seconds),
        rate: args.rate.map(|r| r / records as f64),
        max_requests: args.total_records.map(|n| n.div_ceil(records as u64)),
        retry_at_once: args.retry_at_once,
        tenant_header: args
            .tenant_header
            .then(|| tenantscope_bench::shapes::tenant_name(args.first_tenant)),
    };
    let before = args.pid.and_then(proc_stats::cpu_seconds);
    let report = load::run(&payloads, &options).await?;
    let cpu = match (args.pid.and_then(proc_stats::cpu_seconds), before) {
        (Some(after), Some(before)) => Some(after - before),
        _ => None,
    };
    let rss = args.pid.and_then(proc_stats::rss_bytes);
    let secs = report.elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let summary = serde_json::json!({
        "shape": args.shape.name(),
        "protocol": format!("{protocol:?}").to_lowercase(),
        "compression": format!("{:?}", args.compression).to_lowercase(),
        "connections": options.connections,
        "records_per_request": records,
        "mode": match (args.rate, args.retry_at_once) {
            (Some(_), _) => "open",
            (None, true) => "closed, resending at once",
            (None, false) => "closed",
        },
        "seconds": secs,
        "requests_ok": report.requests_ok,
        "requests_failed": report.requests_failed,
        "by_status": report.by_status,
        "records_per_second": report.records_per_second(),
        "wire_mb_per_second": report.wire_mb_per_second(),
        "bytes_per_record": payloads.bytes_per_record(),
        "latency_ms": {"p50": ms(report.percentile(0.5)), "p99": ms(report.percentile(0.99)), "p999": ms(report.percentile(0.999))},
        "daemon_cpu_seconds_per_second": cpu.map(|c| c / secs),
        "records_per_daemon_cpu_second": cpu.map(|c| report.records_ok as f64 / c.max(1e-9)),
        "daemon_rss_mib": rss.map(|r| r as f64 / (1 << 20) as f64),
        "payload_build_seconds": build_seconds,
    });
    if args.json {
        println!("{summary}");
        return Ok(());
    }
    println!(
        "{} over {:?} ({:?}, {} connections, {} loop): {} requests ok, {} failed in {secs:.1} s",
        args.shape.name(),
        protocol,
        args.compression,
        options.connections,
        summary["mode"].as_str().unwrap_or(""),
        report.requests_ok,
        report.requests_failed
    );
    println!(
        "  {:.0} records/s, {:.1} MB/s on the wire ({:.0} B/record protobuf)",
        report.records_per_second(),
        report.wire_mb_per_second(),
        payloads.bytes_per_record()
    );
    println!(
        "  ack latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        ms(report.percentile(0.5)),
        ms(report.percentile(0.99)),
        ms(report.percentile(0.999))
    );
    println!("  answers: {:?}", report.by_status);
    if let Some(c) = cpu {
        println!(
            "  daemon: {:.2} CPU-seconds/s, {:.0} records per CPU-second{}",
            c / secs,
            report.records_ok as f64 / c.max(1e-9),
            rss.map(|r| format!(", RSS {:.0} MiB", r as f64 / (1 << 20) as f64))
                .unwrap_or_default()
        );
    }
    Ok(())
}
