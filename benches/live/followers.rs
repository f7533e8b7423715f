//! The followers of benches/live.rs: each reads the topic over Flight and notes what it got.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, Int64Array};
use arrow_flight::{FlightClient, Ticket};
use futures::StreamExt;

use super::TOPIC;

/// What one follower saw.
#[derive(Default)]
pub struct Seen {
    pub rows: u64,
    pub batches: u64,
    /// Receipt time of each batch's first `seq`.
    pub arrivals: Vec<(i64, Instant)>,
    /// The `seq` values received (a bit each), and how many arrived twice.
    pub received: Vec<u64>,
    pub twice: u64,
    pub error: Option<String>,
}

/// Follows `TOPIC` from `from` until `rows` rows arrived (or `stop` is set).
pub async fn follow(
    url: String,
    from: &'static str,
    rows: u64,
    stop: Arc<AtomicBool>,
    keep_arrivals: bool,
) -> Seen {
    let mut seen = Seen::default();
    let result: Result<()> = async {
        let channel = tonic::transport::Channel::from_shared(url)?
            .connect()
            .await?;
        let mut client = FlightClient::new(channel);
        let ticket = format!(r#"{{"topic": "{TOPIC}", "from": "{from}", "follow": true}}"#);
        let mut stream = client.do_get(Ticket::new(ticket)).await?;
        while seen.rows < rows && !stop.load(Relaxed) {
            let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
            let batch = match next {
                Err(_) => continue,
                Ok(None) => bail!("the stream ended"),
                Ok(Some(b)) => b?,
            };
            let now = Instant::now();
            if keep_arrivals {
                let seq = batch
                    .column_by_name("seq")
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .context("no seq column")?;
                if !seq.is_empty() {
                    seen.arrivals.push((seq.value(0), now));
                }
            }
            if !keep_arrivals {
                let seq = batch
                    .column_by_name("seq")
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .context("no seq column")?;
                for &v in seq.values() {
                    let (word, bit) = ((v as u64 / 64) as usize, v as u64 % 64);
                    if seen.received.len() <= word {
                        seen.received.resize(word + 1, 0);
                    }
                    seen.twice += (seen.received[word] >> bit) & 1;
                    seen.received[word] |= 1 << bit;
                }
            }
            seen.rows += batch.num_rows() as u64;
            seen.batches += 1;
        }
        Ok(())
    }
    .await;
    seen.error = result.err().map(|e| format!("{e:#}"));
    seen
}

/// The followers' results, giving them at most `secs` s more (then they are told to stop).
pub fn collect(
    rt: &tokio::runtime::Runtime,
    readers: Vec<tokio::task::JoinHandle<Seen>>,
    stop: &AtomicBool,
    secs: u64,
) -> Vec<Seen> {
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut all = Vec::new();
        for mut r in readers {
            let seen = match tokio::time::timeout_at(deadline, &mut r).await {
                Ok(s) => s,
                Err(_) => {
                    stop.store(true, Relaxed);
                    r.await
                }
            };
            all.push(seen.unwrap_or_default());
        }
        all
    })
}
