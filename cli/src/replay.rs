//! `em-agent replay`: puts dead-lettered messages back on the queue, to be processed again.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum};
use em_core::ports::{DeadLetters, PortError};
use em_sqlite::DB_FILE;
use em_sqlite::{EmbeddedStore, Options};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The subcommand's long help.
pub const LONG_ABOUT: &str = "\
Put dead-lettered messages back on the queue, to be processed again.

Moves the messages that are dead-lettered when it starts, oldest first, in batches of --batch. A message \
that is dead-lettered again while it runs (it still cannot be processed) is left for the next run, so a \
replay always ends; the summary says how many are left.

It may run while `em-agent serve` uses the same data directory (SQLite in WAL mode lets both write): the \
server's aggregator picks the messages up within a second. Without a running server they wait in the queue \
for the next `em-agent serve`.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The SQLite store in --data-dir, as `em-agent serve` uses it.
    Embedded,
    /// An SQS queue and its dead-letter queue.
    Aws,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Where the dead letters are.
    #[arg(long, value_enum, default_value = "embedded")]
    pub backend: Backend,
    #[arg(long, default_value = "./.em-agent", env = "EM_AGENT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The SQS queue (URL or name) the messages go back to (--backend aws).
    #[arg(long, env = "EM_AGENT_QUEUE", required_if_eq("backend", "aws"))]
    pub queue: Option<String>,
    /// The SQS dead-letter queue (URL or name) they are taken from (--backend aws).
    #[arg(
        long,
        env = "EM_AGENT_DEAD_LETTER_QUEUE",
        required_if_eq("backend", "aws")
    )]
    pub dead_letter_queue: Option<String>,
    /// Messages moved per transaction (per request on SQS).
    #[arg(long, default_value_t = 100, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no EM Agent data in {} (no {DB_FILE}): give --data-dir or EM_AGENT_DATA_DIR", .0.display())]
    NoData(PathBuf),
    #[error("cannot open the store: {0}")]
    Open(PortError),
    #[error("cannot count the dead letters: {0}")]
    Count(PortError),
    #[error("redrive failed after {moved} messages were put back: {source}")]
    Redrive { moved: u64, source: PortError },
    #[error("--backend aws needs --queue and --dead-letter-queue")]
    MissingQueue,
    #[error("cannot reach the queues: {0}")]
    Connect(PortError),
}

/// Where [`replay`] reports how far it is: a bar in a terminal, nothing elsewhere.
pub trait Progress: Send + Sync {
    /// How many messages it means to move.
    fn start(&self, total: u64);
    fn advance(&self, moved: u64);
    fn finish(&self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub moved: u64,
    /// Dead letters left at the end: those that died again meanwhile, or arrived meanwhile.
    pub remaining: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn line(self) -> String {
        let noun = if self.moved == 1 {
            "message"
        } else {
            "messages"
        };
        format!(
            "replayed {} dead-lettered {noun} in {:.1} s; {} left",
            self.moved,
            self.elapsed.as_secs_f64(),
            self.remaining
        )
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "replayed": self.moved,
            "remaining": self.remaining,
            "elapsed_seconds": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        })
    }
}

/// Redrives, `batch` at a time, as many messages as were dead-lettered when it starts.
///
/// It stops there, not when the dead letters run out: with a consumer running, a message that still fails
/// is dead-lettered again and would otherwise be redriven forever. It also stops early when `redrive`
/// finds nothing (the count may be approximate).
pub async fn replay<D: DeadLetters>(
    dl: &D,
    batch: usize,
    progress: &dyn Progress,
) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let target = dl.dead_letter_count().await.map_err(ReplayError::Count)?;
    progress.start(target);
    let moved = redrive_up_to(dl, target, batch.max(1) as u64, progress).await;
    progress.finish();
    let moved = moved?;
    let remaining = dl.dead_letter_count().await.map_err(ReplayError::Count)?;
    Ok(Summary {
        moved,
        remaining,
        elapsed: started.elapsed(),
    })
}

async fn redrive_up_to<D: DeadLetters>(
    dl: &D,
    target: u64,
    batch: u64,
    progress: &dyn Progress,
) -> Result<u64, ReplayError> {
    let mut moved = 0u64;
    while moved < target {
        let want = usize::try_from(batch.min(target - moved)).unwrap_or(usize::MAX);
        let got = dl
            .redrive(want)
            .await
            .map_err(|source| ReplayError::Redrive { moved, source })? as u64;
        if got == 0 {
            break;
        }
        moved += got;
        progress.advance(got);
    }
    Ok(moved)
}

/// The embedded store in `data_dir`, which must already hold one (an empty new store has nothing to replay
/// and most likely means a wrong directory).
pub async fn replay_embedded(
    data_dir: &Path,
    batch: usize,
    progress: &dyn Progress,
) -> Result<Summary, ReplayError> {
    if !data_dir.join(DB_FILE).is_file() {
        return Err(ReplayError::NoData(data_dir.to_path_buf()));
    }
    let store = EmbeddedStore::open(data_dir, Options::default()).map_err(ReplayError::Open)?;
    replay(&store, batch, progress).await
}

/// The SQS queue `queue` and its dead-letter queue `dead_letter_queue` (each a URL or a name).
pub async fn replay_aws(
    queue: &str,
    dead_letter_queue: &str,
    batch: usize,
    progress: &dyn Progress,
) -> Result<Summary, ReplayError> {
    let sdk = em_aws::sdk_config().await;
    let names = em_aws::AwsNames {
        queue: queue.to_string(),
        dead_letter_queue: Some(dead_letter_queue.to_string()),
        ..em_aws::AwsNames::from_env(&[]).map_err(ReplayError::Connect)?
    };
    let sqs = em_aws::SqsQueue::connect(&sdk, &names)
        .await
        .map_err(ReplayError::Connect)?;
    // SQS moves at most 10 messages a request.
    replay(&sqs, batch.min(10), progress).await
}

/// A bar on stderr for a person watching; hidden when stderr is a pipe or a file, where the summary line is
/// enough.
struct Bar(ProgressBar);

impl Bar {
    fn on_stderr() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(ProgressBar::hidden());
        }
        let style = ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} dead-lettered messages replayed ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        Bar(ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style))
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }

    fn advance(&self, moved: u64) {
        self.0.inc(moved);
    }

    fn finish(&self) {
        // Cleared, so that the summary on stdout is what stays on the screen.
        self.0.finish_and_clear();
    }
}

pub async fn run(args: ReplayArgs) -> Result<(), ReplayError> {
    let bar = Bar::on_stderr();
    let summary = match args.backend {
        Backend::Embedded => replay_embedded(&args.data_dir, args.batch, &bar).await?,
        Backend::Aws => {
            let (Some(queue), Some(dlq)) = (&args.queue, &args.dead_letter_queue) else {
                return Err(ReplayError::MissingQueue);
            };
            replay_aws(queue, dlq, args.batch, &bar).await?
        }
    };
    if args.json {
        println!("{}", summary.to_json());
    } else {
        println!("{}", summary.line());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::sync::Mutex;

    /// Dead letters in memory. With `dies_again`, every redriven message is dead-lettered again at once,
    /// as with a poison message and a consumer running.
    #[derive(Default)]
    struct Fake {
        count: Mutex<u64>,
        /// What `dead_letter_count` says, when it differs from the truth (SQS approximates).
        reported: Option<u64>,
        dies_again: bool,
        fail_on_call: Option<usize>,
        calls: Mutex<Vec<usize>>,
    }

    impl Fake {
        fn with(count: u64) -> Fake {
            Fake {
                count: Mutex::new(count),
                ..Fake::default()
            }
        }
    }

    impl DeadLetters for Fake {
        async fn dead_letter_count(&self) -> Result<u64, PortError> {
            Ok(self.reported.unwrap_or(*self.count.lock().unwrap()))
        }

        async fn redrive(&self, max: usize) -> Result<usize, PortError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(max);
            if self.fail_on_call == Some(calls.len()) {
                return Err(PortError::transient("connection reset"));
            }
            let mut count = self.count.lock().unwrap();
            let n = (*count).min(max as u64);
            if !self.dies_again {
                *count -= n;
            }
            Ok(n as usize)
        }
    }

    #[derive(Default)]
    struct Recorded {
        events: Mutex<Vec<String>>,
    }

    impl Recorded {
        fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }

        fn push(&self, e: String) {
            self.events.lock().unwrap().push(e);
        }
    }

    impl Progress for Recorded {
        fn start(&self, total: u64) {
            self.push(format!("start {total}"));
        }
        fn advance(&self, moved: u64) {
            self.push(format!("+{moved}"));
        }
        fn finish(&self) {
            self.push("finish".into());
        }
    }

    #[tokio::test]
    async fn moves_every_dead_letter_in_batches() {
        let fake = Fake::with(250);
        let progress = Recorded::default();
        let s = replay(&fake, 100, &progress).await.unwrap();
        assert_eq!((s.moved, s.remaining), (250, 0));
        assert_eq!(*fake.calls.lock().unwrap(), [100, 100, 50]);
        assert_eq!(
            progress.events(),
            ["start 250", "+100", "+100", "+50", "finish"]
        );
    }

    #[tokio::test]
    async fn nothing_dead_lettered_means_no_redrive() {
        let fake = Fake::with(0);
        let s = replay(&fake, 100, &Recorded::default()).await.unwrap();
        assert_eq!((s.moved, s.remaining), (0, 0));
        assert!(fake.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn messages_that_die_again_are_moved_once_not_forever() {
        let fake = Fake {
            dies_again: true,
            ..Fake::with(5)
        };
        let s = replay(&fake, 2, &Recorded::default()).await.unwrap();
        assert_eq!((s.moved, s.remaining), (5, 5));
        assert_eq!(*fake.calls.lock().unwrap(), [2, 2, 1]);
    }

    #[tokio::test]
    async fn stops_when_the_dead_letters_run_out_before_the_count() {
        let fake = Fake {
            reported: Some(10),
            ..Fake::with(3)
        };
        let s = replay(&fake, 100, &Recorded::default()).await.unwrap();
        assert_eq!(s.moved, 3);
        assert_eq!(*fake.calls.lock().unwrap(), [10, 7]);
    }

    #[tokio::test]
    async fn a_failure_says_how_many_were_already_moved_and_clears_the_bar() {
        let fake = Fake {
            fail_on_call: Some(3),
            ..Fake::with(10)
        };
        let progress = Recorded::default();
        let e = replay(&fake, 3, &progress).await.unwrap_err();
        assert!(matches!(e, ReplayError::Redrive { moved: 6, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "redrive failed after 6 messages were put back: connection reset"
        );
        assert_eq!(progress.events().last().map(String::as_str), Some("finish"));
    }

    #[test]
    fn the_summary_reads_well_and_has_a_json_form() {
        let s = Summary {
            moved: 12,
            remaining: 0,
            elapsed: Duration::from_millis(312),
        };
        assert_eq!(
            s.line(),
            "replayed 12 dead-lettered messages in 0.3 s; 0 left"
        );
        assert_eq!(
            s.to_json(),
            serde_json::json!({"replayed": 12, "remaining": 0, "elapsed_seconds": 0.312})
        );
        let one = Summary { moved: 1, ..s };
        assert_eq!(
            one.line(),
            "replayed 1 dead-lettered message in 0.3 s; 0 left"
        );
    }

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ReplayArgs,
    }

    #[test]
    fn flags_default_to_the_embedded_store_and_check_what_aws_needs() {
        let a = Cmd::try_parse_from(["replay", "--data-dir", "d"])
            .unwrap()
            .args;
        assert_eq!(
            (a.backend, a.batch, a.json, a.data_dir),
            (Backend::Embedded, 100, false, PathBuf::from("d"))
        );
        assert!(Cmd::try_parse_from(["replay", "--batch", "0"]).is_err());
        assert!(Cmd::try_parse_from(["replay", "--backend", "aws", "--queue", "q"]).is_err());
        let a = Cmd::try_parse_from([
            "replay",
            "--backend",
            "aws",
            "--queue",
            "q",
            "--dead-letter-queue",
            "q-dlq",
        ])
        .unwrap()
        .args;
        assert_eq!(a.backend, Backend::Aws);
        assert_eq!(a.dead_letter_queue.as_deref(), Some("q-dlq"));
    }

    #[tokio::test]
    async fn a_data_dir_without_a_store_is_an_error_not_an_empty_replay() {
        let dir = std::env::temp_dir().join(format!("em-agent-replay-{}", uuid::Uuid::new_v4()));
        let e = replay_embedded(&dir, 10, &Recorded::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ReplayError::NoData(_)), "{e:?}");
        assert!(!dir.exists(), "nothing is created");
    }
}
