//! Placement: which of a location's candidates (provider, AZ) builds a new VM, by the room
//! each has for the template's spec — SCP's free capacity less what vmauto has placed there
//! that SCP does not count yet (VMs being created right now).
//!
//! Only a candidate whose room is known (its SCP answers and its breaker is closed) can be
//! chosen by room. When no known candidate has room but some cannot be asked (an SCP down,
//! not configured yet), the first of those is chosen: its create waits for SCP and resumes by
//! itself, as any create does when SCP is away. When every candidate was asked and none has
//! room, the order is refused ("no capacity"), and the event waits for an admin.

use crate::config::PlacementPolicy;
use crate::db::models::vps::Spec;

/// Free room of a candidate, each `None` when SCP does not report it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Room {
    pub cores: Option<f64>,
    pub memory_mb: Option<f64>,
    pub disk_mb: Option<f64>,
}

impl Room {
    /// Whether `spec` fits.
    pub fn fits(&self, spec: Spec) -> bool {
        self.cores.is_none_or(|c| c >= f64::from(spec.cores))
            && self.memory_mb.is_none_or(|m| m >= spec.memory_mb as f64)
            && self.disk_mb.is_none_or(|d| d >= (spec.disk_gb * 1024) as f64)
    }
}

/// What is known of one candidate: its room, or why it cannot be asked.
pub type Known = Result<Room, String>;

/// The outcome of a placement.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    /// Build in candidate `index`: it has room.
    Room(usize),
    /// No candidate known to have room; `index` could not be asked and gets the create.
    Unknown(usize),
    /// Every candidate was asked and none has room; why, per candidate.
    Full(Vec<String>),
}

/// Chooses among `known` (in candidate order) for `spec` under `policy`.
pub fn place(policy: PlacementPolicy, spec: Spec, known: &[Known]) -> Placed {
    let fitting =
        known.iter().enumerate().filter_map(|(i, k)| k.as_ref().ok().filter(|r| r.fits(spec)).map(|r| (i, r)));
    let chosen = match policy {
        PlacementPolicy::Fill => fitting.map(|(i, _)| i).next(),
        // The most free memory (then cores) after this VM; the earlier candidate on a tie.
        PlacementPolicy::Spread => fitting
            .fold(None::<(usize, (f64, f64))>, |best, (i, r)| {
                let score = (r.memory_mb.unwrap_or(f64::MAX), r.cores.unwrap_or(f64::MAX));
                match best {
                    Some((_, b)) if b >= score => best,
                    _ => Some((i, score)),
                }
            })
            .map(|(i, _)| i),
    };
    if let Some(i) = chosen {
        return Placed::Room(i);
    }
    if let Some(i) = known.iter().position(Result::is_err) {
        return Placed::Unknown(i);
    }
    Placed::Full(
        known
            .iter()
            .map(|k| match k {
                Ok(r) => format!(
                    "{} vCPU, {} MB memory, {} GB disk free",
                    r.cores.map_or("?".into(), |c| format!("{c:.0}")),
                    r.memory_mb.map_or("?".into(), |m| format!("{m:.0}")),
                    r.disk_mb.map_or("?".into(), |d| format!("{:.0}", d / 1024.0)),
                ),
                Err(why) => why.clone(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Spec = Spec { cores: 1, memory_mb: 1024, disk_gb: 20 };

    fn room(cores: f64, memory_mb: f64) -> Known {
        Ok(Room { cores: Some(cores), memory_mb: Some(memory_mb), disk_mb: Some(40960.0) })
    }

    #[test]
    fn fill_takes_the_first_with_room_and_spread_the_emptiest() {
        let known = [room(0.5, 8192.0), room(4.0, 4096.0), room(8.0, 16384.0)];
        assert_eq!(place(PlacementPolicy::Fill, SMALL, &known), Placed::Room(1));
        assert_eq!(place(PlacementPolicy::Spread, SMALL, &known), Placed::Room(2));
        let tie = [room(4.0, 4096.0), room(4.0, 4096.0)];
        assert_eq!(place(PlacementPolicy::Spread, SMALL, &tie), Placed::Room(0));
    }

    #[test]
    fn a_candidate_that_cannot_be_asked_is_skipped_while_another_has_room() {
        let known = [Err("breaker open".to_string()), room(4.0, 4096.0)];
        assert_eq!(place(PlacementPolicy::Fill, SMALL, &known), Placed::Room(1));
        let full = [Err("breaker open".to_string()), room(0.0, 0.0)];
        assert_eq!(place(PlacementPolicy::Fill, SMALL, &full), Placed::Unknown(0), "the create waits for that SCP");
    }

    #[test]
    fn all_full_says_what_each_has() {
        let known = [room(0.0, 8192.0), room(2.0, 512.0)];
        let Placed::Full(why) = place(PlacementPolicy::Spread, SMALL, &known) else { panic!("full") };
        assert_eq!(why, vec!["0 vCPU, 8192 MB memory, 40 GB disk free", "2 vCPU, 512 MB memory, 40 GB disk free"]);
        let unreported = [Ok(Room::default())];
        assert_eq!(
            place(PlacementPolicy::Fill, SMALL, &unreported),
            Placed::Room(0),
            "nothing reported: no limit known"
        );
    }
}
