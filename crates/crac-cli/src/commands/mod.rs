//! One module per subcommand, each with its own error enum.

pub mod check;
pub mod checkpoint;
pub mod envfile;
pub mod inspect;
pub mod leftovers;
pub mod list;
pub mod restore;
pub mod run;
pub mod supervise;
