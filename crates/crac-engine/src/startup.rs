//! Facts about the process recorded at start-up, before `main`.

/// File descriptors that were open when the process started (inherited from
/// its parent, as CRaC allows), sorted. Empty until recorded.
pub fn initial_fds() -> &'static [i32] {
    &[]
}
