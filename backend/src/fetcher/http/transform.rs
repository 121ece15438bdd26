//! The transform step of declarative channels: a jq program (run by `jaq`) that reshapes an
//! upstream answer into items, bounded in time and output. `$params` holds the channel's
//! params. Filters that reach outside the document (`env`, `input`, `debug`, `halt`, …) are
//! not available.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;
use thiserror::Error;

/// Native filters left out: they read the environment, the clock or the process's input, or
/// write to stderr.
/// (`halt` stays: the standard library's definitions use it, and here it only ends the
/// program with an error.)
const DENIED: &[&str] = &["env", "input", "inputs", "debug", "stderr", "now"];

/// How long a transform may run and how much it may produce, per page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformLimits {
    pub timeout: Duration,
    pub max_items: usize,
    pub max_bytes: usize,
}

impl Default for TransformLimits {
    fn default() -> Self {
        let d = crate::config::Declarative::default();
        TransformLimits {
            timeout: Duration::from_millis(d.transform_timeout_ms),
            max_items: d.transform_max_items as usize,
            max_bytes: d.transform_max_bytes as usize,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TransformError {
    #[error("transform does not compile: {0}")]
    Compile(String),
    #[error("transform failed: {0}")]
    Run(String),
    #[error("transform produced a value that is not JSON")]
    NotJson,
    #[error("transform ran longer than {0:?}")]
    Timeout(Duration),
    #[error("transform produced more than {0} items")]
    TooManyItems(usize),
    #[error("transform produced more than {0} bytes")]
    TooLarge(usize),
    /// Earlier runs of this channel's transform are still going past their time limit.
    #[error("{0} earlier runs of this transform have not ended")]
    Busy(usize),
}

impl TransformError {
    /// A limit (time, items, bytes) stopped it, as opposed to a failing program.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            TransformError::Timeout(_)
                | TransformError::TooManyItems(_)
                | TransformError::TooLarge(_)
                | TransformError::Busy(_)
        )
    }
}

/// Runs of one channel's transform at once: one stuck in a single endless output cannot be
/// stopped, so at most this many blocking threads are ever held by one channel file.
pub const MAX_IN_FLIGHT: usize = 2;

/// A jq program, checked when the channel file loads.
#[derive(Debug, Clone)]
pub struct Transform {
    code: String,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a run as ended when dropped (when the blocking thread finishes, however late).
struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

type Filter = jaq_core::Filter<data::JustLut<Val>>;

fn compile(code: &str) -> Result<Filter, TransformError> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|f| !DENIED.contains(&f.0));
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader.load(&arena, File { code, path: () }).map_err(|e| {
        let why = e.first().map_or_else(String::new, |(_, e)| syntax(code, e));
        TransformError::Compile(short(why))
    })?;
    Compiler::default()
        .with_funs(funs)
        .with_global_vars(["$params"])
        .compile(modules)
        .map_err(|e| {
            let names: Vec<String> = e
                .iter()
                .flat_map(|(_, errs)| errs.iter().map(|(name, kind)| format!("{name} ({kind:?})")))
                .collect();
            TransformError::Compile(short(format!("undefined: {}", names.join(", "))))
        })
}

/// A syntax error as "expected X at character N: `…`".
fn syntax(code: &str, error: &jaq_core::load::Error<&str>) -> String {
    use jaq_core::load::{lex, Error};
    let (expected, at) = match error {
        Error::Io(v) => return format!("cannot load: {:?}", v.first().map(|(_, m)| m)),
        Error::Lex(v) => match v.first() {
            Some((lex::Expect::Delim(d), at)) if !["(", "[", "{", "\""].contains(d) => {
                ("closing delimiter", *at)
            }
            Some((expect, at)) => (expect.as_str(), *at),
            None => return "syntax error".into(),
        },
        Error::Parse(v) => match v.first() {
            Some((expect, at)) => (expect.as_str(), *at),
            None => return "syntax error".into(),
        },
    };
    // `at` is a slice of `code` (what was found instead).
    let offset = (at.as_ptr() as usize)
        .checked_sub(code.as_ptr() as usize)
        .filter(|o| *o <= code.len())
        .unwrap_or(0);
    let column = code[..offset].chars().count() + 1;
    let found: String = at.chars().take(20).collect();
    format!("expected {expected} at character {column}, found `{found}`")
}

fn short(s: String) -> String {
    s.chars().take(300).collect()
}

impl Transform {
    /// Compiles `code` once to check it.
    pub fn new(code: &str) -> Result<Transform, TransformError> {
        compile(code)?;
        Ok(Transform {
            code: code.into(),
            in_flight: Default::default(),
        })
    }

    /// Runs the program on `input`: one output is returned as is, several become a list.
    /// Blocking: call it off the async runtime ([`Transform::run`]).
    pub fn run_blocking(
        &self,
        input: Value,
        params: &BTreeMap<String, String>,
        limits: TransformLimits,
    ) -> Result<Value, TransformError> {
        let started = Instant::now();
        let filter = compile(&self.code)?;
        let to_val =
            |v: Value| serde_json::from_value::<Val>(v).map_err(|_| TransformError::NotJson);
        let input = to_val(input)?;
        let params = to_val(serde_json::to_value(params).map_err(|_| TransformError::NotJson)?)?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([params]));
        let mut outputs = Vec::new();
        let mut bytes = 0usize;
        for out in filter.id.run((ctx, input)).map(unwrap_valr) {
            let out = out.map_err(|e| TransformError::Run(short(e.to_string())))?;
            let text = out.to_string();
            bytes += text.len();
            if bytes > limits.max_bytes {
                return Err(TransformError::TooLarge(limits.max_bytes));
            }
            outputs
                .push(serde_json::from_str::<Value>(&text).map_err(|_| TransformError::NotJson)?);
            if outputs.len() > limits.max_items {
                return Err(TransformError::TooManyItems(limits.max_items));
            }
            if started.elapsed() > limits.timeout {
                return Err(TransformError::Timeout(limits.timeout));
            }
        }
        let count = match outputs.first() {
            Some(Value::Array(a)) if outputs.len() == 1 => a.len(),
            _ => outputs.len(),
        };
        if count > limits.max_items {
            return Err(TransformError::TooManyItems(limits.max_items));
        }
        Ok(match outputs.len() {
            1 => outputs.pop().unwrap_or_default(),
            _ => Value::Array(outputs),
        })
    }

    /// [`Transform::run_blocking`] on a blocking thread, given up after the time limit
    /// (a program stuck inside one output keeps its thread until it ends; the poll does not
    /// wait for it).
    pub async fn run(
        &self,
        input: Value,
        params: &BTreeMap<String, String>,
        limits: TransformLimits,
    ) -> Result<Value, TransformError> {
        use std::sync::atomic::Ordering;
        let running = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.in_flight.clone());
        if running >= MAX_IN_FLIGHT {
            return Err(TransformError::Busy(running));
        }
        let this = self.clone();
        let params = params.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            this.run_blocking(input, &params, limits)
        });
        match tokio::time::timeout(limits.timeout * 2, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(TransformError::Run(short(e.to_string()))),
            Err(_) => Err(TransformError::Timeout(limits.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn run(code: &str, input: Value) -> Result<Value, TransformError> {
        let params: BTreeMap<String, String> = [("base".into(), "EUR".into())].into();
        Transform::new(code)?.run_blocking(input, &params, TransformLimits::default())
    }

    #[test]
    fn reshapes_and_reads_params() {
        let rates = json!({"rates": {"USD": 1.1, "JPY": 160}});
        assert_eq!(
            run(
                "[.rates | to_entries[] | {id: ($params.base + \"-\" + .key), rate: .value}]",
                rates
            )
            .unwrap(),
            json!([{"id": "EUR-JPY", "rate": 160}, {"id": "EUR-USD", "rate": 1.1}])
        );
        assert_eq!(
            run(".[] | .a", json!([{"a": 1}, {"a": 2}])).unwrap(),
            json!([1, 2])
        );
        assert_eq!(run(".x", json!({"x": {"y": 1}})).unwrap(), json!({"y": 1}));
    }

    #[test]
    fn errors_and_denied_filters() {
        assert!(matches!(
            run(".[", json!(1)),
            Err(TransformError::Compile(_))
        ));
        assert!(matches!(
            run("env", json!(1)),
            Err(TransformError::Compile(_))
        ));
        assert!(matches!(
            run("$ENV", json!(1)),
            Err(TransformError::Compile(_))
        ));
        assert!(matches!(
            run("input", json!(1)),
            Err(TransformError::Compile(_))
        ));
        assert!(matches!(
            run("error(\"x\")", json!(1)),
            Err(TransformError::Run(_))
        ));
    }

    #[test]
    fn limits_stop_it() {
        let limits = TransformLimits {
            max_items: 10,
            ..TransformLimits::default()
        };
        let t = Transform::new("range(100)").unwrap();
        assert_eq!(
            t.run_blocking(json!(null), &BTreeMap::new(), limits),
            Err(TransformError::TooManyItems(10))
        );
        let t = Transform::new("[range(100)]").unwrap();
        assert_eq!(
            t.run_blocking(json!(null), &BTreeMap::new(), limits),
            Err(TransformError::TooManyItems(10))
        );
        let small = TransformLimits {
            max_bytes: 100,
            ..TransformLimits::default()
        };
        let t = Transform::new("[range(1000)]").unwrap();
        assert_eq!(
            t.run_blocking(json!(null), &BTreeMap::new(), small),
            Err(TransformError::TooLarge(100))
        );
        let quick = TransformLimits {
            timeout: Duration::from_millis(1),
            max_items: usize::MAX,
            max_bytes: usize::MAX,
        };
        let t = Transform::new("repeat(.)").unwrap();
        assert_eq!(
            t.run_blocking(json!(1), &BTreeMap::new(), quick),
            Err(TransformError::Timeout(quick.timeout))
        );
    }

    #[tokio::test]
    async fn runs_past_their_time_are_bounded_per_channel() {
        use std::sync::atomic::Ordering;
        let t = Transform::new(".").unwrap();
        let limits = TransformLimits::default();
        assert_eq!(
            t.run(json!([1]), &BTreeMap::new(), limits).await,
            Ok(json!([1]))
        );
        assert_eq!(
            t.in_flight.load(Ordering::Acquire),
            0,
            "a finished run is counted out"
        );
        // As if two earlier runs were stuck inside one output: no third thread is started.
        t.in_flight.store(MAX_IN_FLIGHT, Ordering::Release);
        assert_eq!(
            t.run(json!([1]), &BTreeMap::new(), limits).await,
            Err(TransformError::Busy(MAX_IN_FLIGHT))
        );
        assert_eq!(t.in_flight.load(Ordering::Acquire), MAX_IN_FLIGHT);
        t.in_flight.store(MAX_IN_FLIGHT - 1, Ordering::Release);
        assert!(t.run(json!([1]), &BTreeMap::new(), limits).await.is_ok());
    }

    proptest! {
        /// Any JSON document through `.` comes back equal (the value conversions are exact
        /// for strings, integers and structure).
        #[test]
        fn identity_round_trips(s in "\\PC{0,30}", n in -1_000_000i64..1_000_000, b: bool) {
            let doc = json!({"s": s, "n": n, "b": b, "l": [s, null]});
            prop_assert_eq!(run(".", doc.clone()).unwrap(), doc);
        }
    }
}
