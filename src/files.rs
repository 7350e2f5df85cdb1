//! Reading the config and key files so that no file can hang or exhaust the
//! reloader.
//!
//! The reload task reads whatever the paths in the config point at, and
//! anyone who can write the Secret (or the directory) decides what that is.
//! A plain `std::fs::read` opens a FIFO and waits for a writer for ever (the
//! reload task with it, and the process at exit), reads `/dev/zero` until
//! memory runs out, and takes a 1 GiB sparse file as a key. [`read_regular`]
//! opens without blocking, follows symlinks (a Secret volume's files are
//! symlinks into `..data`), refuses anything that is not a regular file, and
//! caps the size both before and while reading.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most a file of one kind may hold, and what to call that kind in
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Largest size accepted, in bytes.
    pub bytes: u64,
    /// What the files are, plural: "key files".
    pub what: &'static str,
}

/// Keys: a real one is 16 to a few hundred bytes; 64 KiB is far beyond any.
pub const KEY: Cap = Cap {
    bytes: 64 * 1024,
    what: "key files",
};

/// The config: a few hundred bytes per endpoint; 1 MiB is thousands of them.
pub const CONFIG: Cap = Cap {
    bytes: 1024 * 1024,
    what: "config files",
};

/// A file that could not be read, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct ReadError {
    /// The file as named (before symlinks).
    pub path: PathBuf,
    /// What was wrong with it.
    pub kind: ReadErrorKind,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadErrorKind {
    /// Open or read failed: missing, no permission, a socket…
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, device, directory or socket.
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Over the cap before reading.
    #[error("is {size} bytes; {} are at most {}", cap.what, cap.bytes)]
    TooLarge {
        /// The size the file had when opened.
        size: u64,
        /// The cap it is over.
        cap: Cap,
    },
    /// Grew past the cap while being read.
    #[error("grew past {} bytes while being read; {} are at most {}", cap.bytes, cap.what, cap.bytes)]
    Grew {
        /// The cap it went over.
        cap: Cap,
    },
}

/// Read a regular file of at most `cap.bytes` bytes, following symlinks.
///
/// Never opens what is not a regular file when it is asked, so that no
/// device is opened for its side effects (some act on open). Never blocks
/// on a FIFO or device either: the file is opened with `O_NONBLOCK` (which
/// opening a FIFO honours and reading a regular file ignores) and checked
/// again on the opened descriptor, so a swap between check and read cannot
/// slip a FIFO in. Never reads more than `cap.bytes + 1` bytes.
pub fn read_regular(path: &Path, cap: Cap) -> Result<Vec<u8>, ReadError> {
    let error = |kind: ReadErrorKind| ReadError {
        path: path.to_path_buf(),
        kind,
    };
    let asked = std::fs::metadata(path).map_err(|e| error(e.into()))?;
    if !asked.file_type().is_file() {
        return Err(error(ReadErrorKind::NotRegular(describe(
            asked.file_type(),
        ))));
    }
    let file = OpenOptions::new()
        .read(true)
        // NOCTTY: opening a terminal must not make it ours.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| error(e.into()))?;
    let metadata = file.metadata().map_err(|e| error(e.into()))?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(error(ReadErrorKind::NotRegular(describe(file_type))));
    }
    if metadata.len() > cap.bytes {
        return Err(error(ReadErrorKind::TooLarge {
            size: metadata.len(),
            cap,
        }));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // One byte past the cap is enough to tell that the file grew.
    (&file)
        .take(cap.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| error(e.into()))?;
    if bytes.len() as u64 > cap.bytes {
        return Err(error(ReadErrorKind::Grew { cap }));
    }
    Ok(bytes)
}

/// "a FIFO", "a directory"… for a file type that is not a regular file.
fn describe(t: std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::symlink;

    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
    }

    #[test]
    fn reads_a_regular_file_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.key"), b"secret\n").unwrap();
        // As in a Secret volume: name -> ..data/name -> the file.
        std::fs::create_dir(dir.path().join("..2026")).unwrap();
        std::fs::write(dir.path().join("..2026/b.key"), b"other").unwrap();
        symlink("..2026", dir.path().join("..data")).unwrap();
        symlink("..data/b.key", dir.path().join("b.key")).unwrap();
        assert_eq!(
            read_regular(&dir.path().join("a.key"), KEY).unwrap(),
            b"secret\n"
        );
        assert_eq!(
            read_regular(&dir.path().join("b.key"), KEY).unwrap(),
            b"other"
        );
        // Exactly the cap is fine.
        let full = dir.path().join("full.key");
        std::fs::write(&full, vec![b'x'; KEY.bytes as usize]).unwrap();
        assert_eq!(read_regular(&full, KEY).unwrap().len(), 65536);
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("a.key");
        mkfifo(&fifo);
        // With a plain open this call would wait for a writer for ever.
        let e = read_regular(&fifo, KEY).unwrap_err();
        assert!(matches!(e.kind, ReadErrorKind::NotRegular("a FIFO")), "{e}");
        assert_eq!(
            e.to_string(),
            format!("{}: is a FIFO, not a regular file", fifo.display())
        );
        // Through a symlink too.
        let link = dir.path().join("link.key");
        symlink(&fifo, &link).unwrap();
        let e = read_regular(&link, KEY).unwrap_err();
        assert!(
            e.to_string().starts_with(&link.display().to_string()),
            "{e}"
        );
        assert!(e.to_string().ends_with("is a FIFO, not a regular file"));
    }

    #[test]
    fn what_is_not_a_regular_file_is_never_opened() {
        use std::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("a.key");
        mkfifo(&fifo);
        // A writer's open of a FIFO returns once a reader opens it: it
        // tells whether read_regular opened the FIFO at all.
        let (opened, was_opened) = mpsc::channel();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let _w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                opened.send(()).unwrap();
            })
        };
        // Time for the writer to reach its open and wait there.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let e = read_regular(&fifo, KEY).unwrap_err();
        assert!(matches!(e.kind, ReadErrorKind::NotRegular("a FIFO")), "{e}");
        let waited = std::time::Duration::from_millis(300);
        assert!(
            was_opened.recv_timeout(waited).is_err(),
            "read_regular opened the FIFO"
        );
        // Let the writer go.
        let _r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        writer.join().unwrap();
    }

    #[test]
    fn a_symlink_to_dev_zero_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("a.key");
        symlink("/dev/zero", &link).unwrap();
        let e = read_regular(&link, KEY).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: is a character device, not a regular file",
                link.display()
            )
        );
    }

    #[test]
    fn a_sparse_gigabyte_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        File::create(&path).unwrap().set_len(1 << 30).unwrap();
        let e = read_regular(&path, KEY).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: is 1073741824 bytes; key files are at most 65536",
                path.display()
            )
        );
    }

    #[test]
    fn one_byte_over_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluxrecv.yaml");
        std::fs::write(&path, vec![b'#'; CONFIG.bytes as usize + 1]).unwrap();
        let e = read_regular(&path, CONFIG).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is 1048577 bytes; config files are at most 1048576"),
            "{e}"
        );
    }

    #[test]
    fn reading_stops_one_byte_past_the_cap() {
        // A file that grows between the size check and the read looks,
        // to the reader, like one whose data does not end at its size:
        // what `take` must bound. /proc files report size 0 and have more.
        let e = read_regular(
            Path::new("/proc/self/maps"),
            Cap {
                bytes: 10,
                what: "test files",
            },
        )
        .unwrap_err();
        assert!(
            matches!(e.kind, ReadErrorKind::Grew { .. }),
            "{e}: /proc/self/maps has more than 10 bytes"
        );
        assert!(e.to_string().ends_with("test files are at most 10"), "{e}");
    }

    #[test]
    fn a_directory_and_a_missing_file_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular(dir.path(), KEY).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is a directory, not a regular file"),
            "{e}"
        );
        let missing = dir.path().join("missing.key");
        let e = read_regular(&missing, KEY).unwrap_err();
        assert!(e.to_string().starts_with(&missing.display().to_string()));
        assert!(
            matches!(&e.kind, ReadErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
