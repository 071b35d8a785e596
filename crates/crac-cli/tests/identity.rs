//! Files an image maps are identified by content: a byte-identical copy of
//! the program (a redeploy) restores, a rebuilt one is refused by name.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{self, crac, payload, wait_gone, Dir, Service};

const LONG: Duration = Duration::from_secs(60);

/// Puts `bytes` at `path` as a new file (new inode, new mtime), the way a
/// deployment replaces a binary.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, bytes).unwrap();
    fs::set_permissions(&tmp, fs::metadata(path).unwrap().permissions()).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// `bytes` with the first byte of its GNU build-id note flipped: the same
/// size, another build.
fn other_build(bytes: &[u8]) -> Vec<u8> {
    // namesz 4, descsz 20, NT_GNU_BUILD_ID, "GNU\0", then the id.
    let head: [u8; 16] = [4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, b'G', b'N', b'U', 0];
    let at = bytes
        .windows(16)
        .position(|w| w == head)
        .expect("the payload has a GNU build-id note");
    let mut b = bytes.to_vec();
    b[at + 16] ^= 0xff;
    b
}

#[test]
fn a_binary_replaced_by_an_identical_copy_restores_and_a_rebuilt_one_is_refused() {
    let d = Dir::new();
    let bin = d.join("svc");
    let original = fs::read(payload("warmup")).unwrap();
    fs::write(&bin, &original).unwrap();
    fs::set_permissions(&bin, fs::metadata(payload("warmup")).unwrap().permissions()).unwrap();
    let image = d.join("image");
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("run")
        .arg("--checkpoint-to")
        .arg(&image)
        .arg("--")
        .arg(&bin)
        .args(["--mib", "4"]);
    cmd.env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM");
    let mut s = Service::start(cmd);
    s.wait_for("serving", LONG);
    let pid = s.pid();
    crac(["checkpoint", &pid.to_string()]).ok();
    assert!(s.wait_exit(LONG).success(), "{}", s.dump());

    // A redeploy of the same build: another inode, same bytes.
    let ino = fs::metadata(&bin).unwrap().ino();
    replace(&bin, &original);
    assert_ne!(fs::metadata(&bin).unwrap().ino(), ino);
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has(&format!(
            "{}  (matches: same content; inode {ino} → ",
            bin.display()
        ))
        .stdout_has("restore     possible");
    let mut restore = Command::new(util::crac_exe());
    restore.arg("restore").arg(&image);
    let mut r = Service::start(restore);
    r.also_end(pid, &bin);
    r.wait_for("restored in", LONG);
    assert!(
        r.stderr_lines()
            .iter()
            .any(|l| l.contains(&format!("restored process {pid} "))),
        "{}",
        r.dump()
    );
    drop(r);
    wait_gone(pid, LONG);

    // Rebuilt: same size, another build-id.
    replace(&bin, &other_build(&original));
    let out = crac(["restore"]).arg(&image).fails_with(1);
    out.stderr_has(&format!(
        "{} (mapped by the image) changed since the checkpoint: build-id ",
        bin.display()
    ));
    assert!(out.stdout().is_empty(), "{}", out.dump());
    // Another program altogether: the size tells.
    replace(&bin, &fs::read(payload("writer")).unwrap());
    crac(["restore"])
        .arg(&image)
        .fails_with(1)
        .stderr_has(&format!(
            "{} (mapped by the image) changed since the checkpoint: size {} → ",
            bin.display(),
            original.len()
        ));
}
