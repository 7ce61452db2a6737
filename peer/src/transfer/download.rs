//! Fetching one file from one or several peers: manifest, resume, verified chunks, penalties.
//! The decisions are made by [`Transfer`]; this module does the I/O around it.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::identity::PeerId;
use crate::net::endpoint::PeerConnection;
use crate::net::pool::Pool;
use crate::storage::fs_util::{read_exact_at, renamable, sync_dir, write_all_at, write_durable};
use crate::transfer::fetch::FetchError;
use crate::transfer::hash::FileHash;
use crate::transfer::manifest::Manifest;
use crate::transfer::plan::{Accepted, Dropped, PeerSlot, PeerTally, Transfer, TransferConfig};
use crate::transfer::wire::Status;

/// A peer that has the file.
#[derive(Debug, Clone)]
pub struct Source {
    /// Player name, checked against the pin store when given.
    pub name: Option<String>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The key it must prove.
    pub key: PeerId,
    /// Its signed address candidates from the phone book (may be empty).
    pub candidates: Vec<phonebook_proto::Candidate>,
}

/// Download settings.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// Scheduling limits.
    pub transfer: TransferConfig,
    /// Accept LZ4-compressed records.
    pub accept_lz4: bool,
    /// Most sources used at once (memory: at most `transfer.max_in_flight` chunk buffers).
    pub max_sources: usize,
    /// Sources with at least this many corrupt chunks on record are not used.
    pub max_corrupt_chunks: u64,
    /// Wait after a "busy" answer before asking that peer again.
    pub busy_backoff: Duration,
    /// Where received chunks are verified and written.
    pub verify_on: VerifyOn,
    /// Times a download that lost every source starts again, keeping what it verified
    /// (`dest.part`): the connections are made anew, through another path or relay if the
    /// one they took went away (a relay restarted, a NAT mapping expired).
    pub reconnects: u32,
}

/// Where a download verifies (SHA-1) and writes the chunks it receives.
///
/// Verification is one SHA-1 pass over every byte (about 0.6 ns per byte on an x86 core with
/// SHA instructions), as much CPU as quinn's own receive path at loopback rates. On a blocking
/// thread it overlaps with the network tasks when another core is free (a Pi 5 has four); on
/// one core the hand-off only adds thread switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyOn {
    /// A blocking thread when this process may run on more than one CPU
    /// (`std::thread::available_parallelism`, which follows the CPU affinity), else inline.
    #[default]
    Auto,
    /// On the task that received the chunk.
    Inline,
    /// On smol's blocking thread pool (at most one job per request in flight).
    BlockingThread,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        Self {
            transfer: TransferConfig::default(),
            accept_lz4: true,
            max_sources: 16,
            max_corrupt_chunks: 1,
            busy_backoff: Duration::from_millis(250),
            verify_on: VerifyOn::Auto,
            reconnects: 2,
        }
    }
}

/// A progress event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The file.
    pub hash: FileHash,
    /// Verified bytes on disk.
    pub bytes_done: u64,
    /// The file's size.
    pub bytes_total: u64,
}

/// How one source did.
#[derive(Debug, Clone)]
pub struct SourceOutcome {
    /// The source.
    pub peer: PeerId,
    /// Connected and agreed on the manifest.
    pub used: bool,
    /// Its counters in this download.
    pub tally: PeerTally,
}

/// A finished download.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    /// The file.
    pub hash: FileHash,
    /// Its size.
    pub bytes: u64,
    /// Bytes found verified on disk from an earlier attempt.
    pub resumed_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Per source.
    pub sources: Vec<SourceOutcome>,
}

/// A download failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DownloadError {
    /// No source could be connected to: why, for each (sources skipped for earlier corrupt
    /// data are not listed).
    NoSources(Vec<(PeerId, crate::net::endpoint::ConnectError)>),
    /// No connected source had the file.
    NoManifest,
    /// No source sent the file, and these refused to serve us: our key is not among those
    /// their owners share with, or they were full ([`FetchError::Refused`]).
    Refused(Vec<(PeerId, FetchError)>),
    /// Every source was dropped before the file completed. `suspect_manifest`: two sources
    /// failed the same chunk, so the manifest itself may be false.
    Failed {
        /// See above.
        suspect_manifest: bool,
    },
    /// Reading or writing the local file failed.
    Io(io::Error),
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSources(errors) => {
                f.write_str("no source could be reached")?;
                for (peer, e) in errors {
                    write!(f, "; {}: {e}", peer.short())?;
                }
                Ok(())
            }
            Self::NoManifest => f.write_str("no reachable source has the file"),
            Self::Refused(refusals) => {
                f.write_str("no source served the file")?;
                for (peer, e) in refusals {
                    write!(f, "; {}: {e}", peer.short())?;
                }
                Ok(())
            }
            Self::Failed { suspect_manifest: true } => {
                f.write_str("every source failed; two sources failed the same chunk, so the manifest may be false")
            }
            Self::Failed { suspect_manifest: false } => f.write_str("every source failed or sent corrupt data"),
            Self::Io(e) => write!(f, "local file: {e}"),
        }
    }
}

impl std::error::Error for DownloadError {}

impl From<io::Error> for DownloadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

struct State {
    transfer: Mutex<Transfer>,
    event: Event,
    file: File,
    pool: Arc<Pool>,
    config: DownloadConfig,
    progress: Option<smol::channel::Sender<Progress>>,
    io_error: Mutex<Option<io::Error>>,
    /// Verify and write on a blocking thread.
    off_thread: bool,
    /// Blocking jobs not finished yet: the download waits for them before it ends, so that no
    /// write lands in the file after it was renamed or re-verified for another manifest.
    jobs: AtomicUsize,
}

impl State {
    fn finished(&self) -> bool {
        let t = self.transfer.lock().expect("not poisoned");
        t.is_complete() || t.all_dropped() || self.io_error.lock().expect("not poisoned").is_some()
    }
}

/// Downloads the file named `hash` from `sources` to `dest` (the future is `Send`: spawn it
/// anywhere). Verified chunks of an earlier,
/// interrupted attempt (`dest.part` plus `dest.manifest`) are kept and not fetched again.
/// The manifest most sources send is used first; if its chunks fail verification, the next
/// most common one is tried with the sources that sent it.
///
/// A download whose sources were all lost (their connections failed) once it had begun the
/// file (`dest.part` exists) starts again, up to [`DownloadConfig::reconnects`] times, from what it verified.
pub async fn download(
    pool: &Arc<Pool>,
    hash: FileHash,
    sources: &[Source],
    dest: &Path,
    config: DownloadConfig,
    progress: Option<smol::channel::Sender<Progress>>,
) -> Result<DownloadReport, DownloadError> {
    let part = with_suffix(dest, ".part");
    let mut again = 0;
    loop {
        let result =
            download_once(pool, hash, sources, dest, config.clone(), progress.clone()).await;
        match result {
            Err(DownloadError::Failed {
                suspect_manifest: false,
            }) if again < config.reconnects && part.exists() => {
                again += 1;
                log::info!(
                    "{hash}: every source was lost; connecting again ({again} of {})",
                    config.reconnects
                );
            }
            other => return other,
        }
    }
}

async fn download_once(
    pool: &Arc<Pool>,
    hash: FileHash,
    sources: &[Source],
    dest: &Path,
    config: DownloadConfig,
    progress: Option<smol::channel::Sender<Progress>>,
) -> Result<DownloadReport, DownloadError> {
    let start = Instant::now();
    let spawner = pool.endpoint().spawner().clone();
    let part = with_suffix(dest, ".part");
    let sidecar = with_suffix(dest, ".manifest");

    // Connect to every usable source at once.
    let tasks: Vec<_> = sources
        .iter()
        .filter(|s| pool.peer_record(&s.key).corrupt_chunks < config.max_corrupt_chunks)
        .take(config.max_sources)
        .map(|s| {
            let (pool, s) = (pool.clone(), s.clone());
            spawner.spawn(async move {
                (
                    s.key,
                    pool.connect_with(s.name.as_deref(), s.addr, s.key, &s.candidates)
                        .await,
                )
            })
        })
        .collect();
    let mut conns: Vec<(PeerId, Option<PeerConnection>)> = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (key, result) = t.await;
        match result {
            Ok(c) => conns.push((key, Some(c))),
            Err(e) => {
                log::info!("source {} unusable: {e}", key.short());
                conns.push((key, None));
                errors.push((key, e));
            }
        }
    }
    if conns.iter().all(|(_, c)| c.is_none()) {
        return Err(DownloadError::NoSources(errors));
    }

    // Manifests to try, most voted first. A manifest whose chunks fail verification (its
    // sources are dropped as corrupt) is abandoned for the next one, with the sources that
    // sent that one: a majority of sources agreeing on a false manifest delays the download
    // but cannot stop it while one honest source remains.
    let mut candidates: VecDeque<Candidate> = VecDeque::new();
    let mut from_sidecar = false;
    let mut early_chunk = None;
    match load_sidecar(&sidecar, hash) {
        Some(m) => {
            from_sidecar = true;
            candidates.push_back(Candidate {
                manifest: m,
                sources: (0..conns.len()).collect(),
            });
        }
        None => {
            let vote = choose_manifest(
                &spawner,
                &conns,
                hash,
                config.transfer.request_timeout,
                config.accept_lz4,
                true,
            )
            .await;
            if vote.candidates.is_empty() {
                return Err(if vote.refused.is_empty() {
                    DownloadError::NoManifest
                } else {
                    DownloadError::Refused(vote.refused)
                });
            }
            candidates.extend(vote.candidates);
            early_chunk = vote.chunk;
        }
    }
    // The sidecar is only needed to resume after an interruption: it is written durably on a
    // blocking thread while the first chunks are fetched, so its fsyncs add nothing to the
    // time to first byte. A later write waits for the earlier one.
    let mut sidecar_write: Option<smol::Task<io::Result<()>>> = None;
    let mut tried: Vec<Manifest> = Vec::new();
    while let Some(Candidate { manifest, sources }) = candidates.pop_front() {
        let round_conns: Vec<(PeerId, Option<PeerConnection>)> = conns
            .iter()
            .enumerate()
            .map(|(i, (k, c))| (*k, c.clone().filter(|_| sources.contains(&i))))
            .collect();
        if !from_sidecar {
            if let Some(w) = sidecar_write.take() {
                let _ = w.await;
            }
            let (path, bytes) = (sidecar.clone(), manifest.encode());
            sidecar_write = (manifest.chunk_count() > 1)
                .then(|| smol::unblock(move || write_durable(&path, &bytes, 0o644)));
        }
        // The early chunk came with the first vote's manifest exchange.
        let early = early_chunk
            .take()
            .filter(|(peer, _)| round_conns.iter().any(|(p, c)| p == peer && c.is_some()));
        let mut corrupt = false;
        let result = fetch_with(
            pool,
            &spawner,
            FetchRound {
                hash,
                manifest: manifest.clone(),
                conns: &round_conns,
                early_chunk: early,
                dest,
                part: &part,
                sidecar: &sidecar,
                start,
                config: &config,
                progress: progress.clone(),
            },
            &mut sidecar_write,
            &mut corrupt,
        )
        .await;
        match result {
            Err(DownloadError::Failed { .. }) if corrupt => {
                log::warn!(
                    "{hash}: chunks failed verification against the manifest {} source(s) sent",
                    sources.len()
                );
                tried.push(manifest);
                if from_sidecar {
                    // The saved manifest may be the false one: ask the sources.
                    from_sidecar = false;
                    let _ = std::fs::remove_file(&sidecar);
                    let vote = choose_manifest(
                        &spawner,
                        &conns,
                        hash,
                        config.transfer.request_timeout,
                        config.accept_lz4,
                        false,
                    )
                    .await;
                    candidates.extend(vote.candidates);
                }
                candidates.retain(|c| !tried.contains(&c.manifest));
                if let Some(next) = candidates.front() {
                    log::warn!(
                        "{hash}: trying the manifest that {} other source(s) sent",
                        next.sources.len()
                    );
                    continue;
                }
                return result;
            }
            other => return other,
        }
    }
    Err(DownloadError::NoManifest)
}

/// A manifest and the sources (indices into the connections) that sent it.
struct Candidate {
    manifest: Manifest,
    sources: Vec<usize>,
}

/// One attempt at the file with one manifest.
struct FetchRound<'a> {
    hash: FileHash,
    manifest: Manifest,
    /// Every source, `None` for those not used in this round.
    conns: &'a [(PeerId, Option<PeerConnection>)],
    early_chunk: Option<(PeerId, Vec<u8>)>,
    dest: &'a Path,
    part: &'a Path,
    sidecar: &'a Path,
    start: Instant,
    config: &'a DownloadConfig,
    progress: Option<smol::channel::Sender<Progress>>,
}

/// Fetches the file with one manifest. `corrupt` is set if any chunk failed verification
/// against it.
async fn fetch_with(
    pool: &Arc<Pool>,
    spawner: &crate::net::runtime::Spawner,
    round: FetchRound<'_>,
    sidecar_write: &mut Option<smol::Task<io::Result<()>>>,
    corrupt: &mut bool,
) -> Result<DownloadReport, DownloadError> {
    let FetchRound {
        hash,
        manifest,
        conns,
        early_chunk,
        dest,
        part,
        sidecar,
        start,
        config,
        progress,
    } = round;
    let config = config.clone();
    let manifest = Arc::new(manifest);

    if manifest.chunk_count() == 0 {
        if !manifest.is_verified_empty() {
            *corrupt = true;
            return Err(DownloadError::Failed {
                suspect_manifest: true,
            });
        }
        write_durable(dest, b"", 0o644)?;
        let _ = std::fs::remove_file(sidecar);
        return Ok(report(hash, &manifest, 0, start, conns, None));
    }

    let file = renamable(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
    .open(part)?;
    let existing = file.metadata()?.len();
    file.set_len(manifest.file_size())?;
    let have = if existing > 0 {
        verified_chunks(&file, &manifest)?
    } else {
        vec![false; manifest.chunk_count() as usize]
    };
    let resumed_bytes: u64 = (0..manifest.chunk_count())
        .filter(|&i| have[i as usize])
        .map(|i| manifest.chunk_range(i).1 as u64)
        .sum();
    if resumed_bytes > 0 {
        log::info!("resuming {hash}: {resumed_bytes} bytes already verified");
    }
    let mut transfer = Transfer::new(manifest.clone(), config.transfer.clone(), |i| {
        have[i as usize]
    });
    let slots: Vec<(PeerSlot, PeerConnection)> = conns
        .iter()
        .filter_map(|(_, c)| c.clone())
        .map(|c| (transfer.add_peer(), c))
        .collect();
    let pipeline = config
        .transfer
        .max_pipeline
        .max(config.transfer.min_pipeline);
    let off_thread = match config.verify_on {
        VerifyOn::Auto => std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
        VerifyOn::Inline => false,
        VerifyOn::BlockingThread => true,
    };
    let state = Arc::new(State {
        transfer: Mutex::new(transfer),
        event: Event::new(),
        file,
        pool: pool.clone(),
        config,
        progress,
        io_error: Mutex::new(None),
        off_thread,
        jobs: AtomicUsize::new(0),
    });
    if let Some((peer, data)) = early_chunk
        && let Some((slot, _)) = slots.iter().find(|(_, c)| c.peer() == peer)
        && let Some(last) = manifest.chunk_count().checked_sub(1)
    {
        accept_chunk(&state, *slot, peer, last, &data);
    }
    send_progress(&state, &manifest);

    let mut tasks = Vec::new();
    for (slot, conn) in &slots {
        for _ in 0..pipeline {
            tasks.push(spawner.spawn(worker(state.clone(), conn.clone(), *slot)));
        }
    }
    tasks.push(spawner.spawn(timer(state.clone())));
    loop {
        let listener = state.event.listen();
        if state.finished() {
            break;
        }
        listener.await;
    }
    drop(tasks);
    loop {
        let listener = state.event.listen();
        if state.jobs.load(Ordering::Acquire) == 0 {
            break;
        }
        listener.await;
    }

    if let Some(e) = state.io_error.lock().expect("not poisoned").take() {
        return Err(e.into());
    }
    let tallies: HashMap<PeerId, PeerTally> = {
        let t = state.transfer.lock().expect("not poisoned");
        if !t.is_complete() {
            *corrupt = slots
                .iter()
                .any(|(s, _)| t.tally(*s).dropped == Some(Dropped::Corrupt));
            return Err(DownloadError::Failed {
                suspect_manifest: t.manifest_suspect(),
            });
        }
        slots.iter().map(|(s, c)| (c.peer(), t.tally(*s))).collect()
    };
    state.file.sync_all()?;
    std::fs::rename(part, dest)?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir)?;
    }
    if let Some(w) = sidecar_write.take()
        && let Err(e) = w.await
    {
        log::warn!("could not save the resume manifest: {e}");
    }
    let _ = std::fs::remove_file(sidecar);
    Ok(report(
        hash,
        &manifest,
        resumed_bytes,
        start,
        conns,
        Some(&tallies),
    ))
}

fn report(
    hash: FileHash,
    manifest: &Manifest,
    resumed_bytes: u64,
    start: Instant,
    conns: &[(PeerId, Option<PeerConnection>)],
    tallies: Option<&HashMap<PeerId, PeerTally>>,
) -> DownloadReport {
    DownloadReport {
        hash,
        bytes: manifest.file_size(),
        resumed_bytes,
        elapsed: start.elapsed(),
        sources: conns
            .iter()
            .map(|(k, c)| SourceOutcome {
                peer: *k,
                used: c.is_some(),
                tally: tallies.and_then(|t| t.get(k).copied()).unwrap_or_default(),
            })
            .collect(),
    }
}

fn load_sidecar(path: &Path, hash: FileHash) -> Option<Manifest> {
    let bytes = std::fs::read(path).ok()?;
    Manifest::decode(&bytes).ok().filter(|m| m.hash() == hash)
}

/// What [`choose_manifest`] learnt from the sources.
struct Vote {
    /// The manifests with the sources (indices into `conns`) that sent each, the one most of
    /// them sent first (ties: the one first asked).
    candidates: Vec<Candidate>,
    /// The last chunk, if asked for and the first source sent it.
    chunk: Option<(PeerId, Vec<u8>)>,
    /// The sources that refused to serve us, with their reason.
    refused: Vec<(PeerId, FetchError)>,
}

/// Asks every connected source for the manifest.
async fn choose_manifest(
    spawner: &crate::net::runtime::Spawner,
    conns: &[(PeerId, Option<PeerConnection>)],
    hash: FileHash,
    timeout: Duration,
    accept_lz4: bool,
    with_chunk: bool,
) -> Vote {
    // A lone source also sends the last chunk in the same exchange (one round trip saved).
    // With several, the vote waits for every answer, so a chunk riding on one of them would
    // hold every source idle while it crosses that source's uplink: they start at once instead.
    let mut live = conns.iter().enumerate().filter(|(_, (_, c))| c.is_some());
    let first = match (live.next(), live.next()) {
        (Some((i, _)), None) if with_chunk => Some(i),
        _ => None,
    };
    let tasks: Vec<_> = conns
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            let c = c.clone();
            let with_chunk = Some(i) == first;
            spawner.spawn(async move {
                let c = c?;
                let fetch = async {
                    let mut chunk = Vec::new();
                    let got = if with_chunk {
                        c.fetch_manifest_and_last_chunk(hash, accept_lz4, &mut chunk)
                            .await
                    } else {
                        c.fetch_manifest(hash).await.map(|m| (m, false))
                    };
                    match got {
                        Ok((m, has_chunk)) => Ok((m, has_chunk.then_some(chunk))),
                        Err(e) => {
                            log::info!("manifest from {}: {e}", c.peer().short());
                            Err(Some(e).filter(FetchError::is_refusal))
                        }
                    }
                };
                let late = async {
                    smol::Timer::after(timeout).await;
                    log::info!(
                        "manifest from {}: no answer in {timeout:?}",
                        c.peer().short()
                    );
                    Err(None)
                };
                Some(smol::future::or(fetch, late).await)
            })
        })
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut chunk = None;
    let mut refused = Vec::new();
    for (i, (t, (peer, _))) in tasks.into_iter().zip(conns.iter()).enumerate() {
        let (m, data) = match t.await {
            Some(Ok(got)) => got,
            Some(Err(Some(refusal))) => {
                refused.push((*peer, refusal));
                continue;
            }
            Some(Err(None)) | None => continue,
        };
        if let Some(data) = data {
            chunk = Some((*peer, data));
        }
        match candidates.iter_mut().find(|c| c.manifest == m) {
            Some(c) => c.sources.push(i),
            None => candidates.push(Candidate {
                manifest: m,
                sources: vec![i],
            }),
        }
    }
    // Stable: equal votes keep the order of first appearance.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.sources.len()));
    if candidates.len() > 1 {
        log::info!(
            "{hash}: sources disagree on the manifest ({} versions); using the one {} of them sent",
            candidates.len(),
            candidates[0].sources.len()
        );
    }
    Vote {
        candidates,
        chunk,
        refused,
    }
}

/// Which chunks of a partial file already verify (resume).
fn verified_chunks(file: &File, manifest: &Manifest) -> io::Result<Vec<bool>> {
    let mut buf = vec![0u8; manifest.chunk_size() as usize];
    (0..manifest.chunk_count())
        .map(|i| {
            let (off, len) = manifest.chunk_range(i);
            read_exact_at(file, &mut buf[..len], off)?;
            Ok(manifest.verify_chunk(i, &buf[..len]))
        })
        .collect()
}

fn send_progress(state: &State, manifest: &Manifest) {
    let Some(tx) = &state.progress else { return };
    let t = state.transfer.lock().expect("not poisoned");
    let bytes_done =
        (u64::from(t.chunks_done()) * u64::from(manifest.chunk_size())).min(manifest.file_size());
    let _ = tx.try_send(Progress {
        hash: manifest.hash(),
        bytes_done,
        bytes_total: manifest.file_size(),
    });
}

/// Verifies a chunk `peer` sent and writes it if it is new; a corrupt one penalizes the peer.
fn accept_chunk(state: &State, slot: PeerSlot, peer: PeerId, index: u32, data: &[u8]) {
    let verdict =
        state
            .transfer
            .lock()
            .expect("not poisoned")
            .handle_data(slot, index, data, Instant::now());
    if let Ok(Accepted::New { offset }) = verdict
        && let Err(e) = write_all_at(&state.file, data, offset)
    {
        *state.io_error.lock().expect("not poisoned") = Some(e);
    }
    record_verdict(state, peer, index, verdict, data.len());
}

/// [`accept_chunk`] with the SHA-1 pass and the write on a blocking thread; gives the buffer
/// back. The chunk counts as received only once it is written.
async fn accept_chunk_off_thread(
    state: &Arc<State>,
    slot: PeerSlot,
    peer: PeerId,
    index: u32,
    data: Vec<u8>,
) -> Vec<u8> {
    let (manifest, already) = {
        let t = state.transfer.lock().expect("not poisoned");
        (t.manifest().clone(), t.is_done(index))
    };
    state.jobs.fetch_add(1, Ordering::AcqRel);
    let job = JobGuard(state.clone());
    let (data, verified, written) = smol::unblock(move || {
        let verified = manifest.verify_chunk(index, &data);
        // A chunk another peer completed meanwhile is written again with the same verified
        // bytes: harmless, and rare (endgame duplicates).
        let written = if verified && !already {
            let (offset, _) = manifest.chunk_range(index);
            write_all_at(&job.0.file, &data, offset)
        } else {
            Ok(())
        };
        drop(job);
        (data, verified, written)
    })
    .await;
    if let Err(e) = written {
        *state.io_error.lock().expect("not poisoned") = Some(e);
        return data;
    }
    let verdict = state.transfer.lock().expect("not poisoned").handle_checked(
        slot,
        index,
        data.len(),
        verified,
        Instant::now(),
    );
    record_verdict(state, peer, index, verdict, data.len());
    data
}

/// Counts a blocking job until dropped, then wakes the download.
struct JobGuard(Arc<State>);

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.0.jobs.fetch_sub(1, Ordering::AcqRel);
        self.0.event.notify(usize::MAX);
    }
}

/// Pool records, progress and logs for what became of a chunk.
fn record_verdict(
    state: &State,
    peer: PeerId,
    index: u32,
    verdict: Result<Accepted, crate::transfer::plan::Rejected>,
    len: usize,
) {
    match verdict {
        Ok(Accepted::New { .. }) => {
            state.pool.record(peer, |r| {
                r.chunks_received += 1;
                r.bytes_received += len as u64;
            });
            let manifest = state
                .transfer
                .lock()
                .expect("not poisoned")
                .manifest()
                .clone();
            send_progress(state, &manifest);
        }
        Ok(Accepted::Duplicate) => {}
        Err(_) => {
            log::warn!(
                "peer {} sent chunk {index} that failed verification: dropped and penalized",
                peer.short()
            );
            state.pool.record(peer, |r| r.corrupt_chunks += 1);
        }
    }
}

async fn worker(state: Arc<State>, conn: PeerConnection, slot: PeerSlot) {
    let manifest = state
        .transfer
        .lock()
        .expect("not poisoned")
        .manifest()
        .clone();
    let mut buf = Vec::new();
    loop {
        let listener = state.event.listen();
        let index = {
            let mut t = state.transfer.lock().expect("not poisoned");
            if t.is_complete() || !t.is_active(slot) {
                break;
            }
            t.poll_request(slot, Instant::now())
        };
        let Some(index) = index else {
            listener.await;
            continue;
        };
        // A request this old has been given to another peer by `Transfer::handle_timeout`
        // (which counts from the peer's last progress); stop waiting so the slot can work again.
        let fetch = conn.fetch_chunk(&manifest, index, state.config.accept_lz4, &mut buf);
        let late = async {
            smol::Timer::after(state.config.transfer.request_timeout * 2).await;
            Err(FetchError::TimedOut)
        };
        match smol::future::or(fetch, late).await {
            Err(FetchError::TimedOut) => {}
            Ok(()) if state.off_thread => {
                buf = accept_chunk_off_thread(
                    &state,
                    slot,
                    conn.peer(),
                    index,
                    std::mem::take(&mut buf),
                )
                .await;
            }
            Ok(()) => accept_chunk(&state, slot, conn.peer(), index, &buf),
            Err(FetchError::Status(Status::Busy)) => {
                state
                    .transfer
                    .lock()
                    .expect("not poisoned")
                    .handle_busy(slot, index);
                state.event.notify(usize::MAX);
                smol::Timer::after(state.config.busy_backoff).await;
            }
            Err(e) => {
                log::info!(
                    "peer {} dropped from the transfer: {e}",
                    conn.peer().short()
                );
                state
                    .transfer
                    .lock()
                    .expect("not poisoned")
                    .handle_peer_lost(slot);
                state.pool.record(conn.peer(), |r| r.request_failures += 1);
            }
        }
        state.event.notify(usize::MAX);
    }
    state.event.notify(usize::MAX);
}

async fn timer(state: Arc<State>) {
    loop {
        let listener = state.event.listen();
        let deadline = state.transfer.lock().expect("not poisoned").poll_timeout();
        let wait = deadline.map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(Instant::now())
        });
        smol::future::or(listener, async {
            smol::Timer::after(wait).await;
        })
        .await;
        let mut t = state.transfer.lock().expect("not poisoned");
        let before = t.poll_timeout();
        t.handle_timeout(Instant::now());
        if t.poll_timeout() != before {
            drop(t);
            state.event.notify(usize::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    /// `download` must stay spawnable on multi-threaded executors.
    #[allow(dead_code)]
    fn download_future_is_send(pool: std::sync::Arc<crate::Pool>, dest: std::path::PathBuf) {
        fn assert_send<T: Send>(_: T) {}
        assert_send(super::download(
            &pool,
            crate::FileHash::Sha1([0; 20]),
            &[],
            &dest,
            Default::default(),
            None,
        ));
    }
}
