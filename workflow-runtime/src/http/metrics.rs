//! Prometheus metrics of the runs this server drives, from their events.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::events::{Event, EventKind};
use crate::store::RunStatus;

type Labels = Vec<(&'static str, String)>;

/// Step durations' buckets, in seconds: a millisecond to a minute.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

fn step_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The counters, histograms and gauges `/metrics` shows.
pub(crate) struct Metrics {
    registry: Registry,
    runs_started: Family<Labels, Counter>,
    runs_resumed: Family<Labels, Counter>,
    runs_finished: Family<Labels, Counter>,
    step_duration: Family<Labels, Histogram, fn() -> Histogram>,
    step_retries: Family<Labels, Counter>,
    step_failures: Family<Labels, Counter>,
    runs_waiting: Gauge,
    runs_running: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("workflow");
        let runs_started = Family::default();
        registry.register(
            "runs_started",
            "Runs started, by workflow",
            runs_started.clone(),
        );
        let runs_resumed = Family::default();
        registry.register(
            "runs_resumed",
            "Stored runs taken up again (after a pause's answer or a crash), by workflow",
            runs_resumed.clone(),
        );
        let runs_finished = Family::default();
        registry.register(
            "runs_finished",
            "Runs ended, by workflow and status (succeeded, failed, cancelled)",
            runs_finished.clone(),
        );
        let step_duration: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(step_histogram);
        registry.register_with_unit(
            "step_duration",
            "Duration of each step attempt that ended, by workflow, node and outcome",
            Unit::Seconds,
            step_duration.clone(),
        );
        let step_retries = Family::default();
        registry.register(
            "step_retries",
            "Step attempts that failed and are retried, by workflow and node",
            step_retries.clone(),
        );
        let step_failures = Family::default();
        registry.register(
            "step_failures",
            "Steps that failed for good, by workflow and node",
            step_failures.clone(),
        );
        let runs_waiting = Gauge::default();
        registry.register(
            "runs_waiting",
            "Stored runs waiting for input (a human-in-the-loop answer)",
            runs_waiting.clone(),
        );
        let runs_running = Gauge::default();
        registry.register(
            "runs_running",
            "Stored runs that have not ended and do not wait (running, or stopped by a crash)",
            runs_running.clone(),
        );
        Self {
            registry,
            runs_started,
            runs_resumed,
            runs_finished,
            step_duration,
            step_retries,
            step_failures,
            runs_waiting,
            runs_running,
        }
    }

    /// Counts what `event`, of a run of `workflow`, reports.
    pub(crate) fn observe(&self, workflow: &'static str, event: &Event) {
        let labels = |extra: &[(&'static str, &str)]| -> Labels {
            let mut labels = vec![("workflow", workflow.to_owned())];
            labels.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            labels
        };
        match &event.kind {
            EventKind::RunStarted { .. } => {
                self.runs_started.get_or_create(&labels(&[])).inc();
            }
            EventKind::RunResumed { .. } => {
                self.runs_resumed.get_or_create(&labels(&[])).inc();
            }
            EventKind::StepSucceeded { node, duration, .. } => {
                self.step_duration
                    .get_or_create(&labels(&[("node", node), ("outcome", "succeeded")]))
                    .observe(duration.as_secs_f64());
            }
            EventKind::StepRetrying { node, .. } => {
                self.step_retries
                    .get_or_create(&labels(&[("node", node)]))
                    .inc();
            }
            EventKind::StepFailed { node, duration, .. } => {
                self.step_duration
                    .get_or_create(&labels(&[("node", node), ("outcome", "failed")]))
                    .observe(duration.as_secs_f64());
                self.step_failures
                    .get_or_create(&labels(&[("node", node)]))
                    .inc();
            }
            EventKind::RunFinished { .. } => self.finished(workflow, RunStatus::Succeeded),
            EventKind::RunFailed { .. } => self.finished(workflow, RunStatus::Failed),
            EventKind::RunCancelled { .. } => self.finished(workflow, RunStatus::Cancelled),
            _ => {}
        }
    }

    fn finished(&self, workflow: &'static str, status: RunStatus) {
        self.runs_finished
            .get_or_create(&vec![
                ("workflow", workflow.to_owned()),
                ("status", status.as_str().to_owned()),
            ])
            .inc();
    }

    /// The metrics in Prometheus' text format, with the stored runs' counts as given.
    pub(crate) fn render(&self, waiting: u64, running: u64) -> String {
        self.runs_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.runs_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
