//! `pi-server`: the FFXIV peer-to-peer phone book. Run `pi-server --help`.

use pi_server::cli::{self, Command};
use pi_server::server::Server;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match cli::load(std::env::args_os().skip(1), &|k| std::env::var(k).ok()) {
        Ok(Command::Run(c)) => c,
        Ok(Command::PrintConfig(c)) => {
            print!("{}", cli::to_config_file(&c));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("pi-server {}", cli::VERSION);
            return ExitCode::SUCCESS;
        }
        Ok(_) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pi-server: {e}\nTry 'pi-server --help'.");
            return ExitCode::from(2);
        }
    };
    let mut logger = env_logger::Builder::new();
    logger.filter_level(config.log_level.to_filter());
    if let Ok(spec) = std::env::var("RUST_LOG") {
        logger.parse_filters(&spec);
    }
    logger
        .format_timestamp(None)
        .target(env_logger::Target::Stderr)
        .init();

    // Watched before the server binds and says it listens, so that a signal sent as soon as
    // it listens already stops it cleanly (final snapshot) rather than killing it.
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]);
    let server = match Server::bind(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP reloads the certificate files, or renews the ACME certificate now
    // (`systemctl kill -s HUP pi-server`).
    #[cfg(unix)]
    if let Some(reload) = server.tls_reload() {
        match async_signal::Signals::new([async_signal::Signal::Hup]) {
            Ok(mut hup) => {
                std::thread::spawn(move || {
                    smol::block_on(async {
                        use futures_lite::StreamExt as _;
                        while let Some(Ok(_)) = hup.next().await {
                            log::info!("SIGHUP: reloading the certificate");
                            reload.request();
                        }
                    })
                });
            }
            Err(e) => log::warn!(
                "cannot watch SIGHUP ({e}); certificate files are still re-read when they change"
            ),
        }
    }
    let stop = async {
        use futures_lite::StreamExt as _;
        match signals {
            Ok(mut signals) => {
                if let Some(Ok(sig)) = signals.next().await {
                    log::info!(
                        "{}, shutting down",
                        match sig {
                            async_signal::Signal::Int => "interrupted (Ctrl-C, SIGINT)",
                            _ => "terminated (SIGTERM)",
                        }
                    );
                }
            }
            Err(e) => {
                log::error!("cannot watch signals ({e}); stop with SIGKILL only");
                std::future::pending::<()>().await;
            }
        }
    };
    match smol::block_on(server.run(stop)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
