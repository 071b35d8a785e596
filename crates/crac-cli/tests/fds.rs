//! Kernel objects behind descriptors carried across a checkpoint, one test
//! per kind: the `fds` payload sets the object up, checkpoints itself and
//! checks the object's state after `crac restore`.

use crate::native::checkpoint_then_restore;

#[test]
fn eventfd_keeps_its_counter_mode_and_flags() {
    checkpoint_then_restore("fds", &["eventfd"], "EVENTFD OK");
}
