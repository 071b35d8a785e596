//! Configuration from the environment, the counterpart of CRaC's `-XX` flags.
//!
//! | Variable | CRaC flag | Meaning |
//! |---|---|---|
//! | `CRAC_CHECKPOINT_TO` | `-XX:CRaCCheckpointTo` | Image directory; enables checkpoints. `%p` expands to the pid, `%%` to `%`. Unset or empty: [`ConfigError::NotConfigured`]. |
//! | `CRAC_RESTORE_FROM` | `-XX:CRaCRestoreFrom` | Image to restore from. The library only reports it ([`Config::restore_from`]); restoring is the job of `crac restore DIR`. |
//! | `CRAC_ENGINE` | `-XX:CRaCEngine` | `native` (default), `simulate` or `pause`. |
//! | `CRAC_ENGINE_OPTIONS` | `-XX:CRaCEngineOptions` | Comma-separated `key=value` (a bare `key` means `key=true`). |
//! | `CRAC_RESOURCE_POLICIES` | `-Djdk.crac.resource-policies` | File of [resource policies](crate::policy): what a checkpoint does with descriptors left open (`error`, `close`, `ignore`, `reopen`). Read at every checkpoint. |
//!
//! Engine options: `native` takes `keep_running=true|false` (default false:
//! the original process exits once the image is durable) and
//! `compress=none|lz4|zstd` (default none: the page data is stored as it is;
//! otherwise each 64 KiB piece is stored compressed, image format 1.4). `simulate` and
//! `pause` take none. Unknown names, options and values are errors.
//!
//! The environment is read at every [`checkpoint_restore`](crate::checkpoint_restore),
//! so a restored process may change it (CRaC's flags are restore-settable too).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// `CRAC_CHECKPOINT_TO`.
pub const CHECKPOINT_TO_VAR: &str = "CRAC_CHECKPOINT_TO";
/// `CRAC_RESTORE_FROM`.
pub const RESTORE_FROM_VAR: &str = "CRAC_RESTORE_FROM";
/// `CRAC_ENGINE`.
pub const ENGINE_VAR: &str = "CRAC_ENGINE";
/// `CRAC_ENGINE_OPTIONS`.
pub const ENGINE_OPTIONS_VAR: &str = "CRAC_ENGINE_OPTIONS";
/// `CRAC_RESOURCE_POLICIES`.
pub const RESOURCE_POLICIES_VAR: &str = "CRAC_RESOURCE_POLICIES";

/// The engine that makes the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EngineKind {
    /// The real engine: dumps the process to the image directory.
    #[default]
    Native,
    /// Runs hooks and checks, makes no image and returns at once as if
    /// restored. For tests, and for developing on any OS.
    Simulate,
    /// Runs hooks and checks, then blocks the calling thread until
    /// `crac restore DIR` wakes it; that counts as a restore.
    Pause,
}

impl EngineKind {
    /// The name used in `CRAC_ENGINE`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Simulate => "simulate",
            EngineKind::Pause => "pause",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checkpoint configuration, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    checkpoint_to: PathBuf,
    restore_from: Option<PathBuf>,
    engine: EngineKind,
    keep_running: bool,
    compress: crac_engine::native::Compression,
    resource_policies: Option<PathBuf>,
}

/// Why the configuration is unusable. Returned before any resource is
/// notified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `CRAC_CHECKPOINT_TO` is unset or empty.
    #[error("checkpoints are not configured: set CRAC_CHECKPOINT_TO to an image directory")]
    NotConfigured,
    /// A `%` placeholder other than `%p` and `%%`.
    #[error("unknown placeholder {placeholder:?} in CRAC_CHECKPOINT_TO (known: %p, %%)")]
    UnknownPlaceholder {
        /// The placeholder, e.g. `"%x"`, or `"%"` at the end.
        placeholder: String,
    },
    /// A variable that must be UTF-8 is not.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: &'static str,
    },
    /// `CRAC_ENGINE` names no engine.
    #[error("unknown engine {name:?} in CRAC_ENGINE (known: native, simulate, pause)")]
    UnknownEngine {
        /// The name given.
        name: String,
    },
    /// An entry of `CRAC_ENGINE_OPTIONS` has an empty key.
    #[error("malformed entry {entry:?} in CRAC_ENGINE_OPTIONS (expected key=value)")]
    MalformedOption {
        /// The entry.
        entry: String,
    },
    /// An option the engine does not take.
    #[error("unknown option {key:?} for engine {engine} in CRAC_ENGINE_OPTIONS ({})",
        known_options(*engine))]
    UnknownOption {
        /// The engine.
        engine: EngineKind,
        /// The option's key.
        key: String,
    },
    /// An option value that does not parse.
    #[error(
        "invalid value {value:?} for option {key} in CRAC_ENGINE_OPTIONS (expected {expected})"
    )]
    InvalidValue {
        /// The option's key.
        key: String,
        /// The value given.
        value: String,
        /// What the option takes.
        expected: &'static str,
    },
}

fn known_options(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Native => "known: keep_running, compress",
        EngineKind::Simulate | EngineKind::Pause => "it takes none",
    }
}

impl Config {
    /// Reads the configuration from the environment (see the
    /// [module docs](self)).
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(|name| std::env::var_os(name), std::process::id())
    }

    pub(crate) fn from_vars(
        var: impl Fn(&str) -> Option<OsString>,
        pid: u32,
    ) -> Result<Config, ConfigError> {
        let utf8 = |name: &'static str| -> Result<Option<String>, ConfigError> {
            var(name)
                .map(|v| v.into_string())
                .transpose()
                .map_err(|_| ConfigError::NotUnicode { var: name })
        };
        // Engine settings are checked first so that a typo shows up even
        // before the directory is set.
        let engine = match utf8(ENGINE_VAR)?.as_deref().map(str::trim) {
            None | Some("") | Some("native") => EngineKind::Native,
            Some("simulate") => EngineKind::Simulate,
            Some("pause") => EngineKind::Pause,
            Some(other) => {
                return Err(ConfigError::UnknownEngine {
                    name: other.to_owned(),
                })
            }
        };
        let mut keep_running = false;
        let mut compress = crac_engine::native::Compression::None;
        for entry in utf8(ENGINE_OPTIONS_VAR)?
            .as_deref()
            .unwrap_or("")
            .split(',')
        {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (key, value) = entry.split_once('=').unwrap_or((entry, "true"));
            let (key, value) = (key.trim(), value.trim());
            match (engine, key) {
                (_, "") => {
                    return Err(ConfigError::MalformedOption {
                        entry: entry.to_owned(),
                    })
                }
                (EngineKind::Native, "keep_running") => keep_running = parse_bool(key, value)?,
                (EngineKind::Native, "compress") => {
                    compress =
                        crac_engine::native::Compression::from_name(value).ok_or_else(|| {
                            ConfigError::InvalidValue {
                                key: key.to_owned(),
                                value: value.to_owned(),
                                expected: "none, lz4 or zstd",
                            }
                        })?
                }
                _ => {
                    return Err(ConfigError::UnknownOption {
                        engine,
                        key: key.to_owned(),
                    })
                }
            }
        }
        let checkpoint_to = match var(CHECKPOINT_TO_VAR) {
            Some(v) if !v.is_empty() => expand(&v, pid)?,
            _ => return Err(ConfigError::NotConfigured),
        };
        let restore_from = var(RESTORE_FROM_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let resource_policies = var(RESOURCE_POLICIES_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(Config {
            checkpoint_to,
            restore_from,
            engine,
            keep_running,
            compress,
            resource_policies,
        })
    }

    /// The image directory, `%p` expanded.
    pub fn checkpoint_to(&self) -> &Path {
        &self.checkpoint_to
    }

    /// Sends one checkpoint's image elsewhere (`crac checkpoint --to`).
    pub(crate) fn set_checkpoint_to(&mut self, dir: &Path) {
        dir.clone_into(&mut self.checkpoint_to);
    }

    /// `CRAC_RESTORE_FROM`, if set.
    pub fn restore_from(&self) -> Option<&Path> {
        self.restore_from.as_deref()
    }

    /// The engine.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// The native engine's `keep_running` option.
    pub fn keep_running(&self) -> bool {
        self.keep_running
    }

    /// The native engine's `compress` option.
    pub fn compress(&self) -> crac_engine::native::Compression {
        self.compress
    }

    /// `CRAC_RESOURCE_POLICIES`, if set: the [resource policies](crate::policy)
    /// file.
    pub fn resource_policies(&self) -> Option<&Path> {
        self.resource_policies.as_deref()
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: "true or false",
        }),
    }
}

/// Expands `%p` (pid) and `%%` (`%`).
fn expand(template: &OsStr, pid: u32) -> Result<PathBuf, ConfigError> {
    let mut out = Vec::new();
    let mut bytes = template.as_bytes().iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'p') => out.extend_from_slice(pid.to_string().as_bytes()),
            Some(b'%') => out.push(b'%'),
            other => {
                let mut placeholder = String::from("%");
                if let Some(c) = other {
                    placeholder.push_str(&String::from_utf8_lossy(&[c]));
                }
                return Err(ConfigError::UnknownPlaceholder { placeholder });
            }
        }
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            },
            4242,
        )
    }

    #[test]
    fn defaults() {
        let c = config(&[("CRAC_CHECKPOINT_TO", "/tmp/img")]).unwrap();
        assert_eq!(c.checkpoint_to(), Path::new("/tmp/img"));
        assert_eq!(c.engine(), EngineKind::Native);
        assert!(!c.keep_running());
        assert_eq!(c.restore_from(), None);
    }

    #[test]
    fn placeholders_expand() {
        let c = config(&[("CRAC_CHECKPOINT_TO", "/tmp/%p/img-%p-100%%")]).unwrap();
        assert_eq!(c.checkpoint_to(), Path::new("/tmp/4242/img-4242-100%"));
        let e = config(&[("CRAC_CHECKPOINT_TO", "/tmp/%x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown placeholder \"%x\" in CRAC_CHECKPOINT_TO (known: %p, %%)"
        );
        let e = config(&[("CRAC_CHECKPOINT_TO", "/tmp/%")]).unwrap_err();
        assert_eq!(
            e,
            ConfigError::UnknownPlaceholder {
                placeholder: "%".into()
            }
        );
    }

    #[test]
    fn not_configured() {
        for vars in [&[][..], &[("CRAC_CHECKPOINT_TO", "")][..]] {
            let e = config(vars).unwrap_err();
            assert_eq!(e, ConfigError::NotConfigured);
            assert_eq!(
                e.to_string(),
                "checkpoints are not configured: set CRAC_CHECKPOINT_TO to an image directory"
            );
        }
    }

    #[test]
    fn engines_and_options() {
        let c = config(&[
            ("CRAC_CHECKPOINT_TO", "/i"),
            ("CRAC_ENGINE_OPTIONS", " keep_running=true ,"),
        ])
        .unwrap();
        assert!(c.keep_running());
        let c = config(&[
            ("CRAC_CHECKPOINT_TO", "/i"),
            ("CRAC_ENGINE_OPTIONS", "keep_running"),
        ])
        .unwrap();
        assert!(c.keep_running());
        assert_eq!(c.compress(), crac_engine::native::Compression::None);
        for (v, want) in [
            ("none", crac_engine::native::Compression::None),
            ("lz4", crac_engine::native::Compression::Lz4),
            ("zstd", crac_engine::native::Compression::Zstd),
        ] {
            let opts = format!("keep_running,compress={v}");
            let c =
                config(&[("CRAC_CHECKPOINT_TO", "/i"), ("CRAC_ENGINE_OPTIONS", &opts)]).unwrap();
            assert_eq!(c.compress(), want);
        }
        let e = config(&[
            ("CRAC_CHECKPOINT_TO", "/i"),
            ("CRAC_ENGINE_OPTIONS", "compress=gzip"),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"gzip\" for option compress in CRAC_ENGINE_OPTIONS (expected none, lz4 or zstd)"
        );
        let c = config(&[("CRAC_CHECKPOINT_TO", "/i"), ("CRAC_ENGINE", "pause")]).unwrap();
        assert_eq!(c.engine(), EngineKind::Pause);
        let c = config(&[("CRAC_CHECKPOINT_TO", "/i"), ("CRAC_ENGINE", "simulate")]).unwrap();
        assert_eq!(c.engine(), EngineKind::Simulate);

        let e = config(&[("CRAC_CHECKPOINT_TO", "/i"), ("CRAC_ENGINE", "criu")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown engine \"criu\" in CRAC_ENGINE (known: native, simulate, pause)"
        );
        let e = config(&[("CRAC_ENGINE_OPTIONS", "fast=1")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown option \"fast\" for engine native in CRAC_ENGINE_OPTIONS (known: keep_running, compress)"
        );
        let e = config(&[
            ("CRAC_ENGINE", "simulate"),
            ("CRAC_ENGINE_OPTIONS", "keep_running"),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown option \"keep_running\" for engine simulate in CRAC_ENGINE_OPTIONS \
             (it takes none)"
        );
        let e = config(&[("CRAC_ENGINE_OPTIONS", "keep_running=maybe")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"maybe\" for option keep_running in CRAC_ENGINE_OPTIONS \
             (expected true or false)"
        );
        let e = config(&[("CRAC_ENGINE_OPTIONS", "=1")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed entry \"=1\" in CRAC_ENGINE_OPTIONS (expected key=value)"
        );
    }

    #[test]
    fn restore_from_is_reported() {
        let c = config(&[("CRAC_CHECKPOINT_TO", "/i"), ("CRAC_RESTORE_FROM", "/r")]).unwrap();
        assert_eq!(c.restore_from(), Some(Path::new("/r")));
    }

    #[test]
    fn resource_policies_file_is_reported() {
        let c = config(&[("CRAC_CHECKPOINT_TO", "/i")]).unwrap();
        assert_eq!(c.resource_policies(), None);
        let c = config(&[("CRAC_CHECKPOINT_TO", "/i"), ("CRAC_RESOURCE_POLICIES", "")]).unwrap();
        assert_eq!(c.resource_policies(), None);
        let c = config(&[
            ("CRAC_CHECKPOINT_TO", "/i"),
            ("CRAC_RESOURCE_POLICIES", "/etc/p.yaml"),
        ])
        .unwrap();
        assert_eq!(c.resource_policies(), Some(Path::new("/etc/p.yaml")));
    }
}
