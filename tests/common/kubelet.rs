//! A Kubernetes Secret volume, written the way the kubelet writes one
//! (`AtomicWriter.Write` in kubernetes/pkg/volume/util/atomic_writer.go):
//!
//! 1. write every file into a new directory `..<timestamp>`;
//! 2. create a relative symlink `..data_tmp -> ..<timestamp>`;
//! 3. rename `..data_tmp` over `..data` (the atomic step);
//! 4. create `name -> ..data/name` for names that have no link yet;
//! 5. remove the links of names no longer in the Secret;
//! 6. delete the previous `..<timestamp>` directory.
//!
//! The names users see never change; only `..data` moves. A file-level watch
//! follows the link into the old directory and dies in step 6.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One mounted Secret.
pub struct SecretVolume {
    dir: PathBuf,
    /// Top-level names projected now (the user-visible links).
    names: BTreeSet<String>,
    updates: u32,
}

impl SecretVolume {
    /// Mount an empty volume at `dir` (created) and project `files` into it,
    /// as the kubelet does when the pod starts.
    pub fn mount(dir: &Path, files: &[(&str, &[u8])]) -> SecretVolume {
        fs::create_dir_all(dir).unwrap();
        let mut volume = SecretVolume {
            dir: dir.to_path_buf(),
            names: BTreeSet::new(),
            updates: 0,
        };
        volume.update(files);
        volume
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path users name for `name`, e.g. `/etc/fluxrecv/fluxrecv.yaml`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The `..<timestamp>` directory `..data` points at now. Writing inside
    /// it changes what the volume serves without any event in the mount
    /// point: how a lost event looks from flux-recv's side.
    pub fn data_dir(&self) -> PathBuf {
        self.dir
            .join(fs::read_link(self.dir.join("..data")).unwrap())
    }

    /// Replace the Secret's contents with `files` (names may contain `/`),
    /// in the kubelet's order. Keys not listed are removed.
    pub fn update(&mut self, files: &[(&str, &[u8])]) {
        let data = self.dir.join("..data");
        let old = fs::read_link(&data)
            .ok()
            .map(|target| self.dir.join(target));
        let new_names: BTreeSet<String> = files.iter().map(|(name, _)| top_level(name)).collect();
        let to_remove: Vec<String> = self.names.difference(&new_names).cloned().collect();

        // 1. Every file into a fresh timestamped directory.
        self.updates += 1;
        let ts_name = format!("..{}.{:09}", timestamp(), self.updates);
        let ts_dir = self.dir.join(&ts_name);
        fs::create_dir(&ts_dir).unwrap();
        for (name, bytes) in files {
            let path = ts_dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
        }

        // 2. and 3. Point `..data` at it in one rename.
        let tmp = self.dir.join("..data_tmp");
        symlink(&ts_name, &tmp).unwrap();
        fs::rename(&tmp, &data).unwrap();

        // 4. Links for new names.
        for name in &new_names {
            let link = self.dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }

        // 5. Links for names that went away.
        for name in &to_remove {
            fs::remove_file(self.dir.join(name)).unwrap();
        }

        // 6. The previous generation.
        if let Some(old) = old {
            fs::remove_dir_all(old).unwrap();
        }
        self.names = new_names;
    }
}

/// `sub/key` is linked as `sub -> ..data/sub`.
fn top_level(name: &str) -> String {
    match Path::new(name).components().next() {
        Some(Component::Normal(first)) => first.to_string_lossy().into_owned(),
        _ => panic!("a Secret key must be a relative path: {name:?}"),
    }
}

/// `2006_01_02_15_04_05`, the kubelet's layout, in UTC.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
