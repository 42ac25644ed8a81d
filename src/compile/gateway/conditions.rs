//! Gateway API conditions as compile writes them: `lastTransitionTime` at the epoch (the
//! status writer stamps real times), `observedGeneration` from the object's generation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

/// One condition. `status` true is `"True"`.
pub fn cond(type_: &str, status: bool, reason: &str, message: impl Into<String>, meta: &ObjectMeta) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: meta.generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Sets `c` in `list`, replacing a condition of the same type.
pub fn set(list: &mut Vec<Condition>, c: Condition) {
    match list.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) => *x = c,
        None => list.push(c),
    }
}

/// The condition of `type_` in `list`, if any.
pub fn get<'a>(list: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    list.iter().find(|c| c.type_ == type_)
}
