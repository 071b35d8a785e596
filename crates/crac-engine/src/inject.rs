//! Making a program that does not link crac checkpointable (`crac run`):
//! preloading libcrac into it.
//!
//! The library is the one built with crac: `libcrac.so` next to the `crac`
//! executable (as cargo lays out a target directory), else in `../lib`
//! (an installation in `PREFIX/bin` and `PREFIX/lib`). A plain file, not a
//! copy: a restored process maps it again from the same path, so it must
//! stay there, unchanged, as long as images made with it are restored.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::elf::{self, Program};

/// The library's file name.
pub const LIBRARY: &str = "libcrac.so";

/// What `crac run` does before executing a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Nothing: the program contains crac, links libcrac, or does not exist
    /// (executing it reports that).
    None,
    /// Preload this library (absolute).
    Preload(PathBuf),
}

/// Why a program cannot get libcrac.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The program has no dynamic loader to preload a library with.
    #[error("{} is statically linked: crac cannot inject its library; link it with libcrac or the crac crate", program.to_string_lossy())]
    Static {
        /// The program as given.
        program: OsString,
    },
    /// The program is an ELF file of another class or byte order.
    #[error("{} is not a 64-bit program: crac cannot inject its library into it", program.to_string_lossy())]
    Foreign {
        /// The program as given.
        program: OsString,
    },
    /// crac's library is not where crac looks for it.
    #[error("{} does not link crac, and crac's library is missing: looked for {}; build it with `cargo build --release --workspace`, which puts libcrac.so next to crac",
        program.to_string_lossy(),
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    Missing {
        /// The program as given.
        program: OsString,
        /// The places looked at.
        searched: Vec<PathBuf>,
    },
}

/// Decides how `program` (as given to `crac run`, found through `PATH` if
/// it has no slash) gets crac, with `crac_exe` the running crac executable.
pub fn plan(program: &OsStr, crac_exe: &Path) -> Result<Injection, InjectError> {
    let Some(path) = resolve(program) else {
        return Ok(Injection::None);
    };
    let linking = match elf::program(&path) {
        // Executing it reports that it is missing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Injection::None),
        // A script: the kernel runs its interpreter, which gets the library;
        // an unreadable (execute-only) program gets it too, if it can.
        Ok(Program::NotElf) | Err(_) => None,
        Ok(Program::OtherElf) => {
            return Err(InjectError::Foreign {
                program: program.to_owned(),
            })
        }
        Ok(Program::Elf(l)) => Some(l),
    };
    if let Some(l) = &linking {
        let links_libcrac = l.needed.iter().any(|n| n == LIBRARY);
        if l.has_crac || links_libcrac {
            return Ok(Injection::None);
        }
        if !l.dynamic {
            return Err(InjectError::Static {
                program: program.to_owned(),
            });
        }
    }
    let searched = candidates(crac_exe);
    match searched.iter().find(|p| p.is_file()) {
        Some(lib) => Ok(Injection::Preload(
            std::fs::canonicalize(lib).unwrap_or_else(|_| lib.clone()),
        )),
        None => Err(InjectError::Missing {
            program: program.to_owned(),
            searched,
        }),
    }
}

/// Where crac looks for its library.
pub fn candidates(crac_exe: &Path) -> Vec<PathBuf> {
    let dir = crac_exe.parent().unwrap_or(Path::new("/"));
    vec![dir.join(LIBRARY), dir.join("../lib").join(LIBRARY)]
}

/// `LD_PRELOAD` with `lib` first, before what `current` preloads.
pub fn ld_preload(lib: &Path, current: Option<&OsStr>) -> OsString {
    let mut value = lib.as_os_str().to_owned();
    if let Some(rest) = current.filter(|c| !c.is_empty()) {
        value.push(":");
        value.push(rest);
    }
    value
}

/// The file `execvp` would run for `program`.
fn resolve(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_containing_crac_is_left_alone() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            plan(exe.as_os_str(), Path::new("/nonexistent/crac")).unwrap(),
            Injection::None
        );
    }

    #[test]
    fn a_dynamic_program_without_crac_needs_the_library() {
        let dir = tempfile::tempdir().unwrap();
        let crac = dir.path().join("crac");
        let err = plan(OsStr::new("sh"), &crac).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "sh does not link crac, and crac's library is missing: looked for {0}/libcrac.so \
                 and {0}/../lib/libcrac.so; build it with `cargo build --release --workspace`, \
                 which puts libcrac.so next to crac",
                dir.path().display()
            )
        );
        std::fs::write(dir.path().join(LIBRARY), b"").unwrap();
        assert_eq!(
            plan(OsStr::new("sh"), &crac).unwrap(),
            Injection::Preload(dir.path().canonicalize().unwrap().join(LIBRARY))
        );
    }

    #[test]
    fn preload_goes_first() {
        assert_eq!(
            ld_preload(Path::new("/l/libcrac.so"), Some(OsStr::new("/x.so"))),
            "/l/libcrac.so:/x.so"
        );
        assert_eq!(
            ld_preload(Path::new("/l/libcrac.so"), None),
            "/l/libcrac.so"
        );
    }
}
