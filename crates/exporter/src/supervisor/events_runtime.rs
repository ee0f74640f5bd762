//! The running `[events]` path as one unit that the supervisor starts, and stops or replaces on a
//! reload: the SQS consumer tasks, the refresher they call, and discovery's "list now" signal.

use std::sync::Arc;

use crate::aws::{ClientOptions, Clients};
use crate::config::Config;
use crate::state::State;

use super::EventsError;

/// The running event path: the consumer tasks, the refresher they call, and the signal that makes
/// discovery list now.
pub(super) struct EventsRuntime {
    pub(super) refresher: Arc<crate::events::refresh::StateRefresher>,
    pub(super) rediscover: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    consumer: tokio::task::JoinSet<()>,
}

impl EventsRuntime {
    /// The queue client of `settings` for this replica's shard (`config.polling.shard`); makes no
    /// call. Fails, changing nothing, when the queue is shared between shards or has no region.
    pub(super) async fn queue(
        config: &Config,
        settings: &crate::config::EventsConfig,
        clients: &Clients,
        options: &ClientOptions,
    ) -> Result<crate::aws::sqs::SqsQueue, EventsError> {
        let shard = config.polling.shard;
        if !shard.is_all() && !settings.per_shard() {
            return Err(EventsError::SharedQueue { shard });
        }
        Ok(
            crate::aws::sqs::SqsQueue::build(settings.queue_settings(shard), clients, options)
                .await?,
        )
    }

    /// Starts consuming `queue` for the datastores of `config` (the counters carry on across
    /// restarts; `healthlake_feed_up{feed="events"}` starts again at 0 until the new queue answers).
    pub(super) fn start(
        config: &Config,
        settings: &crate::config::EventsConfig,
        queue: crate::aws::sqs::SqsQueue,
        clients: &Arc<Clients>,
        state: &Arc<State>,
    ) -> EventsRuntime {
        let stats = state.enable_events();
        stats.up.store(false, std::sync::atomic::Ordering::Relaxed);
        let rediscover =
            (!config.discovery.is_empty()).then(|| Arc::new(tokio::sync::watch::channel(0u64).0));
        let refresher = Arc::new(crate::events::refresh::StateRefresher::new(
            config,
            Arc::clone(clients),
            state,
            rediscover.clone(),
        ));
        // The queue's visibility timeout is read (and checked) by the consumer itself: it hides
        // the messages it holds for that long, and extends it while their refresh waits.
        tracing::info!(
            queue_url = queue.queue_url(),
            wait_time = %humantime::format_duration(settings.wait_time),
            "consuming HealthLake events; polling.interval is now the reconciliation interval"
        );
        let consumer =
            crate::events::consumer::spawn(Arc::new(queue), Arc::clone(&refresher), stats);
        EventsRuntime {
            refresher,
            rediscover,
            consumer,
        }
    }

    /// Stops consuming: a receive in flight is dropped, and messages not yet deleted come back
    /// after their visibility timeout (to the next consumer, or to this queue's next reader).
    pub(super) async fn stop(mut self) {
        self.consumer.shutdown().await;
    }
}
