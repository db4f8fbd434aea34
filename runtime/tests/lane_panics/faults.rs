//! A metrics recorder whose handles panic on demand, per metric name and model label.

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use std::sync::{Arc, Mutex, Once};

/// Armed faults: (metric name, model label, panics left).
static ARMED: Mutex<Vec<(&'static str, String, usize)>> = Mutex::new(Vec::new());

/// Installs the recorder once per test process.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::set_global_recorder(Faulty).expect("no other recorder in this test binary")
    });
}

/// The next `times` updates of `metric` for `model` panic.
pub fn arm(metric: &'static str, model: &str, times: usize) {
    ARMED
        .lock()
        .unwrap()
        .push((metric, model.to_string(), times));
}

/// No more injected panics for `model`.
pub fn disarm(model: &str) {
    ARMED.lock().unwrap().retain(|(_, m, _)| m != model);
}

struct Faulty;

struct Handle {
    metric: String,
    model: Option<String>,
}

impl Handle {
    fn hit(&self) {
        let Some(model) = &self.model else { return };
        let mut armed = ARMED.lock().unwrap();
        let fire = armed
            .iter_mut()
            .find(|(m, md, left)| *m == self.metric && md == model && *left > 0)
            .map(|e| e.2 -= 1)
            .is_some();
        drop(armed);
        if fire {
            panic!("injected fault in metric {} of model {model}", self.metric);
        }
    }
}

impl CounterFn for Handle {
    fn increment(&self, _: u64) {
        self.hit()
    }
    fn absolute(&self, _: u64) {
        self.hit()
    }
}

impl GaugeFn for Handle {
    fn increment(&self, _: f64) {
        self.hit()
    }
    fn decrement(&self, _: f64) {
        self.hit()
    }
    fn set(&self, _: f64) {
        self.hit()
    }
}

impl HistogramFn for Handle {
    fn record(&self, _: f64) {
        self.hit()
    }
}

fn handle(key: &Key) -> Arc<Handle> {
    Arc::new(Handle {
        metric: key.name().to_string(),
        model: key
            .labels()
            .find(|l| l.key() == "model")
            .map(|l| l.value().to_string()),
    })
}

impl Recorder for Faulty {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(handle(key))
    }
}
