use clap::Parser;
use vestibule::cli::{Cli, Command};

/// jemalloc: see Cargo.toml for why. `proxy::forget` gives its free pages back after changes.
#[cfg(all(not(feature = "count-allocations"), not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "count-allocations")]
#[global_allocator]
static ALLOCATOR: vestibule::alloc_count::Counting = vestibule::alloc_count::Counting;

fn init_logging(format: &str, quiet: bool) {
    // rustls warns once per connection about clients that send an IP address as SNI (wrk
    // does): not worth a line each.
    let default = if quiet { "warn,rustls=error" } else { "info,rustls=error" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VESTIBULE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Every core the process may use (cgroup CPU limits included), unless told otherwise.
    let workers = cli.worker_threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
    // One worker: a single-threaded scheduler does the same work without work-stealing costs.
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The one-shot tools print their answer on stdout; their logs stay quiet unless asked.
    let quiet = matches!(cli.command, Command::Check(_) | Command::Explain(_));
    init_logging(&cli.log_format, quiet);
    vestibule::tls::install_provider();
    match cli.command {
        Command::Serve(args) => {
            let hup = catch_hangup();
            let opts = args.into_options();
            let (delay, grace) = (opts.shutdown_delay, opts.shutdown_grace);
            let running = vestibule::serve::start(opts).await?;
            let rescan = running.rescanner();
            on_hangup(hup, move || {
                tracing::info!("SIGHUP: reading the manifests again");
                rescan.request();
            });
            shutdown_signal().await;
            // A second signal during the drain stops at once.
            tokio::select! {
                _ = running.shutdown(delay, grace) => {}
                _ = shutdown_signal() => tracing::warn!("second signal: stopping now"),
            }
        }
        Command::Echo(args) => {
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            let addr = listener.local_addr()?;
            let identity = vestibule::echo::Identity { service: args.service, namespace: args.namespace, pod: args.pod };
            let _task = vestibule::echo::spawn(listener, vestibule::echo::EchoOptions { identity, tls: args.tls });
            tracing::info!(%addr, tls = args.tls, "echo listening");
            shutdown_signal().await;
        }
        Command::Demo(args) => vestibule::demo::run(args.into_options()).await?,
        Command::Controller(args) => {
            let hup = catch_hangup();
            let running = vestibule::controller::start(args.into_options()).await?;
            on_hangup(hup, || tracing::info!("SIGHUP: nothing to reload, the controller follows the API server"));
            shutdown_signal().await;
            // A second signal during the drain stops at once.
            tokio::select! {
                _ = running.shutdown() => {}
                _ = shutdown_signal() => tracing::warn!("second signal: stopping now"),
            }
        }
        Command::Check(args) => {
            let code = vestibule::tools::check(args, &mut std::io::stdout())?;
            std::process::exit(code);
        }
        Command::Explain(args) => {
            let code = vestibule::tools::explain(args, &mut std::io::stdout()).await?;
            std::process::exit(code);
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// SIGHUPs caught by `catch_hangup`, waiting for `on_hangup`.
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

/// SIGHUP is sent by habit to reload: from this call on it no longer ends the process.
#[cfg(unix)]
fn catch_hangup() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(|e| tracing::warn!("cannot catch SIGHUP: {e}")).ok()
}
#[cfg(not(unix))]
fn catch_hangup() -> Hangups {}

/// Runs `f` for every SIGHUP caught, in the background.
fn on_hangup(hup: Hangups, f: impl Fn() + Send + 'static) {
    #[cfg(unix)]
    if let Some(mut hup) = hup {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                f();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (hup, f);
}
