//! The simulator's mutable state and what every request shares.
//!
//! One mutex guards everything that changes ([`Sim`]): a request takes it once, checks its
//! token, replays or runs its handler, records the answer and leaves. Holding one lock for the
//! whole of a short synchronous handler keeps idempotency and capacity checks atomic, and
//! costs far less than the HTTP work around it.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::{Credentials, RsaKey, Tokens};
use super::console::Tickets;
use super::fault::FaultRule;
use super::limits::Limits;
use super::reply::Envelope;
use super::tasks::{Effect, Task, TaskState, advance};
use super::world::{Millis, World, seed};

/// How long `X-Client-Token` answers are remembered (§3.4).
pub const REPLAY_WINDOW_MS: Millis = 24 * 3600 * 1000;
/// At most this many remembered answers; the oldest go first.
pub const REPLAY_CAPACITY: usize = 10_000;

/// Settings that may change at run time through `PUT /_sim/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knobs {
    pub task_ms: u64,
    pub ip_delay_ms: u64,
    pub token_ttl_secs: u64,
    pub get_per_minute: u32,
    pub write_per_minute: u32,
    /// How long a remote-console URL may be opened after it was issued.
    #[serde(default = "default_console_ttl")]
    pub console_ttl_secs: u64,
}

fn default_console_ttl() -> u64 {
    super::console::DEFAULT_TTL_SECS
}

/// A remembered answer to a request that carried `X-Client-Token`.
#[derive(Debug, Clone)]
pub struct Replay {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Bytes,
    pub at: Millis,
}

/// Everything mutable, behind one lock.
pub struct Sim {
    pub world: World,
    pub tokens: Tokens,
    /// Remote-console tokens handed out and not yet expired.
    pub consoles: Tickets,
    /// `(identity, X-Client-Token)` → answer.
    pub replays: HashMap<(String, String), Replay>,
    /// Requests seen per endpoint pattern (`GET /janus/{v}/servers/{id}`).
    pub requests: BTreeMap<String, u64>,
    pub faults: Vec<FaultRule>,
    pub rng: StdRng,
    pub knobs: Knobs,
    /// Something changed since the state file was last written.
    pub dirty: bool,
    /// Earliest pending task deadline: until then [`Sim::advance`] does nothing.
    next_due: Millis,
}

impl Sim {
    pub fn new(world: World, knobs: Knobs, faults: Vec<FaultRule>, seed_value: Option<u64>) -> Self {
        let rng = match seed_value {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        Self {
            world,
            tokens: Tokens::new(),
            consoles: Tickets::default(),
            replays: HashMap::new(),
            requests: BTreeMap::new(),
            faults,
            rng,
            knobs,
            dirty: false,
            next_due: Millis::MIN,
        }
    }

    /// Applies the tasks that are due. Almost always a single comparison.
    pub fn advance(&mut self, now: Millis) {
        if now < self.next_due {
            return;
        }
        let before = self.world.tasks.values().filter(|t| t.state == TaskState::Pending).count();
        let ip_delay = i64::try_from(self.knobs.ip_delay_ms).unwrap_or(i64::MAX);
        self.next_due = advance(&mut self.world, now, ip_delay);
        if before > 0 {
            self.dirty = true;
        }
    }

    /// Back to the seeded cloud: no servers, tasks, replays, counters or faults. Tokens stay
    /// valid so a test can reset between cases without logging in again.
    pub fn reset(&mut self) {
        self.world = seed();
        self.replays.clear();
        self.consoles.clear();
        self.requests.clear();
        self.faults.clear();
        self.next_due = Millis::MIN;
        self.dirty = true;
    }

    /// A new random id in SCP's UUID style (from the seeded generator when `--seed` is set).
    pub fn new_id(&mut self) -> String {
        let bytes: [u8; 16] = rand::Rng::r#gen(&mut self.rng);
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    /// A locally administered MAC in Sangfor's `fe:fc:fe` range.
    pub fn new_mac(&mut self) -> String {
        let b: [u8; 3] = rand::Rng::r#gen(&mut self.rng);
        format!("fe:fc:fe:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
    }

    /// Submits a task. `factor` scales the base duration (a create takes longer than a
    /// stop); `doomed` makes it fail with that reason. Returns the task id.
    pub fn submit(&mut self, spec: TaskSpec, now: Millis) -> String {
        let id = self.new_id();
        let base = self.knobs.task_ms as f64;
        let waiting = (base * 0.2) as i64;
        let doing = ((base * spec.factor) as i64).max(1);
        let seq = self.world.seq();
        if let Some(server_id) = spec.effect.server_id()
            && let Some(s) = self.world.servers.get_mut(server_id)
        {
            s.busy_task = Some(id.clone());
        }
        let task = Task {
            id: id.clone(),
            action: spec.action.to_string(),
            object_type: spec.object_type.to_string(),
            object_id: spec.object_id,
            object_name: spec.object_name,
            az_id: spec.az_id,
            user_name: spec.user,
            user_ip: spec.user_ip,
            created_ms: now,
            start_ms: now.saturating_add(waiting),
            end_ms: now.saturating_add(waiting).saturating_add(doing),
            seq,
            state: TaskState::Pending,
            description: String::new(),
            doomed: spec.doomed,
            effect: spec.effect,
        };
        self.next_due = self.next_due.min(task.end_ms);
        self.world.tasks.insert(id.clone(), task);
        self.dirty = true;
        id
    }

    /// Remembers an answer for `X-Client-Token`, forgetting expired and excess ones.
    pub fn remember(&mut self, key: (String, String), replay: Replay) {
        if self.replays.len() >= REPLAY_CAPACITY {
            let horizon = replay.at - REPLAY_WINDOW_MS;
            self.replays.retain(|_, r| r.at > horizon);
            if self.replays.len() >= REPLAY_CAPACITY
                && let Some(oldest) = self.replays.iter().min_by_key(|(_, r)| r.at).map(|(k, _)| k.clone())
            {
                self.replays.remove(&oldest);
            }
        }
        self.replays.insert(key, replay);
    }

    /// Counts of servers and tasks by state, for the control endpoint.
    pub fn counts(&self) -> Value {
        let servers = self.world.servers.values();
        let live = servers.clone().filter(|s| !s.recycled);
        let by_task = |st: TaskState| self.world.tasks.values().filter(|t| t.state == st).count();
        let mut status: BTreeMap<&str, u64> = BTreeMap::new();
        for s in live.clone() {
            *status.entry(s.status.as_str()).or_default() += 1;
        }
        json!({
            "servers": live.count(),
            "recycled": servers.filter(|s| s.recycled).count(),
            "servers_by_status": status,
            "tasks": self.world.tasks.len(),
            "tasks_pending": by_task(TaskState::Pending),
            "tasks_finished": by_task(TaskState::Finish),
            "tasks_failed": by_task(TaskState::Failure),
            "tokens": self.tokens.len(),
            "console_tokens": self.consoles.len(),
            "replays": self.replays.len(),
            "volumes": self.world.volumes.len(),
        })
    }
}

/// What a handler asks [`Sim::submit`] for.
pub struct TaskSpec {
    pub action: &'static str,
    pub object_type: &'static str,
    pub object_id: String,
    pub object_name: String,
    pub az_id: String,
    pub user: String,
    pub user_ip: String,
    pub factor: f64,
    pub doomed: Option<String>,
    pub effect: Effect,
}

/// Immutable settings plus the locked state; one per running simulator.
pub struct Shared {
    pub creds: Credentials,
    pub envelope: Envelope,
    pub max_body_bytes: usize,
    pub max_clock_skew_secs: u64,
    pub base_url: String,
    pub rsa: RsaKey,
    pub limits: Limits,
    pub sim: parking_lot::Mutex<Sim>,
}
