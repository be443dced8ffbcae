//! Fault injection: per endpoint (method + path glob or regex), what goes wrong and how often.
//!
//! Rules come from `--fault` flags and from `POST /_sim/faults`. For each request the first
//! matching rule that still has firings left is rolled; its effects are independent: added
//! latency, a dropped connection, a forced 429, an error status, and a "task will fail" mark
//! for whatever task the request creates.

use rand::Rng;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// One fault rule, as given on the command line or as JSON to the control endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method, or `*` for any.
    #[serde(default = "any_method")]
    pub method: String,
    /// A glob over the request path (`*` matches any run of characters, `/` included; `?` one
    /// character), or a regular expression when prefixed with `re:`.
    pub path: String,
    /// Probability (0..=1) of answering with one of `statuses` instead of running the request.
    #[serde(default)]
    pub error_rate: f64,
    /// Statuses for `error_rate`, picked at random; 500 when empty.
    #[serde(default)]
    pub statuses: Vec<u16>,
    /// Added latency before the request is handled.
    #[serde(default)]
    pub latency_ms: u64,
    /// Probability that a task created by the request ends in `failure`.
    #[serde(default)]
    pub task_failure_rate: f64,
    /// How such a task fails, picked at random: SCP's reasons differ by cause, and a client
    /// must tell a cause an admin has to fix from one that passes. Empty: `generic`.
    #[serde(default)]
    pub task_failure_kinds: Vec<TaskFailureKind>,
    /// Probability that a failed create leaves its VM behind in `error` (half-built), as SCP
    /// can, instead of removing it.
    #[serde(default)]
    pub failed_create_leaves_vm: f64,
    /// Probability of closing the connection without any response.
    #[serde(default)]
    pub drop_rate: f64,
    /// Probability of a forced 429 in SCP's envelope.
    #[serde(default)]
    pub rate_limit_rate: f64,
    /// How many more requests this rule may touch; unlimited when absent.
    #[serde(default)]
    pub times: Option<u64>,
    #[serde(skip)]
    matcher: Option<Regex>,
}

fn any_method() -> String {
    "*".into()
}

/// What a rule decided for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub latency_ms: u64,
    pub drop: bool,
    pub force_429: bool,
    pub error_status: Option<u16>,
    pub fail_task: Option<TaskFault>,
}

/// The causes of a failed SCP task the simulator can produce, each with the kind of reason
/// text SCP gives for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskFailureKind {
    /// SCP's catch-all ("internal error, try again later").
    Generic,
    /// The task ran out of time on the platform.
    Timeout,
    /// The host was busy with other work.
    HostBusy,
    /// The VM went missing under the task (`vm_lost`).
    Lost,
    /// The pool has no room for the VM.
    Capacity,
    /// The image is damaged or unusable.
    Image,
    /// The tenant's quota is used up.
    Quota,
    /// The platform's license does not allow more.
    License,
}

impl TaskFailureKind {
    pub const ALL: [Self; 8] = [
        Self::Generic,
        Self::Timeout,
        Self::HostBusy,
        Self::Lost,
        Self::Capacity,
        Self::Image,
        Self::Quota,
        Self::License,
    ];

    /// The task's failure `description`, worded as SCP words it.
    pub fn reason(self, action: &str) -> String {
        match self {
            Self::Generic => format!("{action} failed: internal error, please try again later (injected fault)"),
            Self::Timeout => format!("{action} failed: the operation timed out on the platform (injected fault)"),
            Self::HostBusy => format!("{action} failed: the host is busy, please try again later (injected fault)"),
            Self::Lost => format!("{action} failed: the VM is lost (vm_lost) (injected fault)"),
            Self::Capacity => {
                format!("{action} failed: Insufficient memory in resource pool, resources exhausted (injected fault)")
            }
            Self::Image => format!("{action} failed: the image is invalid or damaged (injected fault)"),
            Self::Quota => format!("{action} failed: the project quota is exceeded (injected fault)"),
            Self::License => format!("{action} failed: license limit reached, the license is invalid (injected fault)"),
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.trim().to_string()))
            .map_err(|_| format!("unknown task failure kind {s:?} (one of generic, timeout, host_busy, lost, capacity, image, quota, license, all)"))
    }
}

/// A rule's decision that the task a request creates fails, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFault {
    pub kind: TaskFailureKind,
    /// A failed create leaves its VM in `error`.
    pub leave_vm: bool,
}

impl FaultRule {
    /// Validates the rule and compiles its path pattern.
    pub fn compile(mut self) -> Result<Self, String> {
        self.method = self.method.trim().to_ascii_uppercase();
        let pattern = match self.path.strip_prefix("re:") {
            Some(re) => re.to_string(),
            None => glob_to_regex(&self.path),
        };
        self.matcher = Some(Regex::new(&pattern).map_err(|e| format!("bad path pattern {:?}: {e}", self.path))?);
        for (name, p) in [
            ("error_rate", self.error_rate),
            ("task_failure_rate", self.task_failure_rate),
            ("drop_rate", self.drop_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("failed_create_leaves_vm", self.failed_create_leaves_vm),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be between 0 and 1, got {p}"));
            }
        }
        if let Some(bad) = self.statuses.iter().find(|s| !(400..=599).contains(*s)) {
            return Err(format!("fault status {bad} is not an HTTP error status (400..=599)"));
        }
        Ok(self)
    }

    /// Parses the `--fault` syntax: `METHOD PATH [key=value ...]`, e.g.
    /// `POST /janus/*/servers error_rate=0.5 status=500,503 latency_ms=200`, or a JSON object.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.starts_with('{') {
            let rule: Self = serde_json::from_str(spec).map_err(|e| format!("bad fault JSON: {e}"))?;
            return rule.compile();
        }
        let mut words = spec.split_whitespace();
        let method = words.next().ok_or("empty fault spec")?.to_string();
        let path = words.next().ok_or("fault spec needs METHOD and PATH")?.to_string();
        let mut rule = Self {
            method,
            path,
            error_rate: 0.0,
            statuses: Vec::new(),
            latency_ms: 0,
            task_failure_rate: 0.0,
            drop_rate: 0.0,
            rate_limit_rate: 0.0,
            task_failure_kinds: Vec::new(),
            failed_create_leaves_vm: 0.0,
            times: None,
            matcher: None,
        };
        for word in words {
            let (key, value) = word.split_once('=').ok_or_else(|| format!("expected key=value, got {word:?}"))?;
            let float = || value.parse::<f64>().map_err(|_| format!("{key} needs a number, got {value:?}"));
            let int = || value.parse::<u64>().map_err(|_| format!("{key} needs an integer, got {value:?}"));
            match key {
                "error_rate" => rule.error_rate = float()?,
                "status" | "statuses" => {
                    rule.statuses = value
                        .split(',')
                        .map(|s| s.parse::<u16>().map_err(|_| format!("bad status {s:?}")))
                        .collect::<Result<_, _>>()?;
                }
                "latency_ms" => rule.latency_ms = int()?,
                "task_failure_rate" => rule.task_failure_rate = float()?,
                "task_failure_kinds" | "task_failure_kind" => {
                    rule.task_failure_kinds = if value == "all" {
                        TaskFailureKind::ALL.to_vec()
                    } else {
                        value.split(',').map(TaskFailureKind::parse).collect::<Result<_, _>>()?
                    };
                }
                "failed_create_leaves_vm" => rule.failed_create_leaves_vm = float()?,
                "drop_rate" => rule.drop_rate = float()?,
                "rate_limit_rate" | "force_429" => rule.rate_limit_rate = float()?,
                "times" => rule.times = Some(int()?),
                other => return Err(format!("unknown fault key {other:?}")),
            }
        }
        rule.compile()
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method))
            && self.times != Some(0)
            && self.matcher.as_ref().is_some_and(|m| m.is_match(path))
    }

    /// Rolls the dice for one request and consumes one firing.
    pub fn roll(&mut self, rng: &mut impl Rng) -> Verdict {
        if let Some(t) = self.times.as_mut() {
            *t = t.saturating_sub(1);
        }
        fn hit(p: f64, rng: &mut impl Rng) -> bool {
            p > 0.0 && rng.gen_bool(p.min(1.0))
        }
        let drop = hit(self.drop_rate, rng);
        let force_429 = hit(self.rate_limit_rate, rng);
        let error = hit(self.error_rate, rng);
        let fail_task = if hit(self.task_failure_rate, rng) {
            let kind = match self.task_failure_kinds.len() {
                0 => TaskFailureKind::Generic,
                n => self.task_failure_kinds[rng.gen_range(0..n)],
            };
            Some(TaskFault { kind, leave_vm: hit(self.failed_create_leaves_vm, rng) })
        } else {
            None
        };
        let error_status = error.then(|| match self.statuses.len() {
            0 => 500,
            n => self.statuses[rng.gen_range(0..n)],
        });
        Verdict { latency_ms: self.latency_ms, drop, force_429, error_status, fail_task }
    }
}

/// An anchored regex for a path glob.
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_cli_specs() {
        let r = FaultRule::parse("post /janus/*/servers error_rate=1 status=503,502 times=2").expect("rule");
        assert!(r.matches("POST", "/janus/20180725/servers"));
        assert!(!r.matches("GET", "/janus/20180725/servers"));
        assert!(!r.matches("POST", "/janus/20180725/servers/x/start"));
        assert_eq!(r.statuses, vec![503, 502]);
        let re = FaultRule::parse("* re:^/janus/\\d+/tasks/.+$ task_failure_rate=1").expect("rule");
        assert!(re.matches("GET", "/janus/20180725/tasks/abc"));
        assert!(FaultRule::parse("GET /x error_rate=2").is_err());
        assert!(FaultRule::parse("GET /x status=200 error_rate=1").is_err());
        assert!(FaultRule::parse("GET").is_err());
        assert!(FaultRule::parse("GET /x bogus=1").is_err());
        let kinds = FaultRule::parse("POST /x task_failure_rate=1 task_failure_kinds=quota,lost").expect("rule");
        assert_eq!(kinds.task_failure_kinds, vec![TaskFailureKind::Quota, TaskFailureKind::Lost]);
        let all = FaultRule::parse("POST /x task_failure_kinds=all failed_create_leaves_vm=1").expect("rule");
        assert_eq!(all.task_failure_kinds.len(), TaskFailureKind::ALL.len());
        assert!(FaultRule::parse("POST /x task_failure_kinds=nope").is_err());
        assert!(FaultRule::parse("POST /x failed_create_leaves_vm=2").is_err());
        let json = FaultRule::parse(r#"{"path": "/janus/*", "drop_rate": 1.0}"#).expect("json rule");
        assert!(json.matches("DELETE", "/janus/20180725/servers/1"));
    }

    #[test]
    fn times_limits_firings() {
        let mut r = FaultRule::parse("GET /a error_rate=1 times=1").expect("rule");
        let mut rng = rand::thread_rng();
        assert_eq!(r.roll(&mut rng).error_status, Some(500));
        assert!(!r.matches("GET", "/a"));
    }

    #[test]
    fn task_faults_carry_their_kind() {
        let mut r =
            FaultRule::parse("POST /a task_failure_rate=1 task_failure_kinds=license failed_create_leaves_vm=1")
                .expect("rule");
        let v = r.roll(&mut rand::thread_rng());
        assert_eq!(v.fail_task, Some(TaskFault { kind: TaskFailureKind::License, leave_vm: true }));
        assert!(TaskFailureKind::License.reason("create_server").contains("license"));
        let mut none = FaultRule::parse("POST /a error_rate=1").expect("rule");
        assert_eq!(none.roll(&mut rand::thread_rng()).fail_task, None);
    }
}
