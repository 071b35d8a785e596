//! What `crac inspect` says about temporary directories killed dumps left
//! next to an image (see `crac_image::leftover`).

use std::path::Path;

use crac_image::{Leftover, LeftoverState};
use serde::Serialize;

use crate::output;

/// One leftover, for `crac inspect --json`.
#[derive(Debug, Serialize)]
pub struct LeftoverJson {
    path: String,
    uid: u32,
    bytes: u64,
    /// `in-use`, `stale` or `foreign`.
    state: &'static str,
}

/// The leftovers next to the image `dir` (or inside `dir` if it holds no
/// image); none if the directory cannot be listed.
pub fn find(dir: &Path) -> Vec<Leftover> {
    crac_image::find_leftovers(dir).unwrap_or_default()
}

pub fn json(found: &[Leftover]) -> Vec<LeftoverJson> {
    found
        .iter()
        .map(|l| LeftoverJson {
            path: l.path.display().to_string(),
            uid: l.uid,
            bytes: l.bytes,
            state: match l.state {
                LeftoverState::InUse => "in-use",
                LeftoverState::Stale => "stale",
                LeftoverState::Foreign => "foreign",
            },
        })
        .collect()
}

/// One line per leftover, for people.
pub fn human(found: &[Leftover]) -> String {
    let mut o = String::new();
    for l in found {
        let why = match l.state {
            LeftoverState::InUse => "a checkpoint is writing it now",
            LeftoverState::Stale => {
                "left by a checkpoint that was killed; the next checkpoint of this image \
                 removes it"
            }
            LeftoverState::Foreign => {
                "left by a checkpoint that was killed; not removed automatically (another \
                 user's, or it holds other files)"
            }
        };
        o.push_str(&format!(
            "leftover    {} ({}, uid {}): {why}\n",
            l.path.display(),
            output::bytes(l.bytes),
            l.uid
        ));
    }
    o
}
