//! Standard conditions whose `lastTransitionTime` changes only when their status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True`/`False`, as conditions spell them.
pub fn status_str(ok: bool) -> &'static str {
    if ok { "True" } else { "False" }
}

/// Set condition `type_` in `conditions`, keeping its `lastTransitionTime` unless its status
/// changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = status_str(ok);
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The condition `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut conds = Vec::new();
        set(
            &mut conds,
            "Ready",
            false,
            "RollingOut",
            "a",
            Some(1),
            &at(10),
        );
        set(
            &mut conds,
            "Ready",
            false,
            "ReplicasNotReady",
            "b",
            Some(2),
            &at(20),
        );
        assert_eq!(conds[0].last_transition_time, at(10));
        assert_eq!(conds[0].reason, "ReplicasNotReady");
        assert_eq!(conds[0].observed_generation, Some(2));
        set(
            &mut conds,
            "Ready",
            true,
            "Available",
            "c",
            Some(2),
            &at(30),
        );
        assert_eq!(conds[0].last_transition_time, at(30));
        assert_eq!(conds.len(), 1);
    }
}
