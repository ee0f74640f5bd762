//! Bounded reads of the files an operator points the exporter at: the configuration file, the web
//! config file, TLS certificates and keys. Only a regular file is read (symlinks followed, as a
//! Kubernetes ConfigMap's `..data` link is), and never more than a limit: a FIFO would block the
//! read until a writer comes and a device (`/dev/zero`) never ends, so neither is ever opened for
//! reading, and a huge file is refused instead of filling memory. A leaf: it imports nothing of ours.

use std::io::{self, Read};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// What it is instead ("a FIFO (named pipe)", "a directory", …).
    #[error("it is {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("it is larger than {limit_kib} KiB")]
    TooLarge { limit_kib: u64 },
}

impl FileProblem {
    /// The problem as an `io::Error`, for error types that carry one.
    pub fn into_io(self) -> io::Error {
        match self {
            FileProblem::Io(error) => error,
            other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// Reads `path` whole: a regular file of at most `max_bytes`.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileProblem> {
    // Looked at before opening, so that a FIFO is never opened.
    let metadata = std::fs::metadata(path)?;
    check(&metadata, max_bytes)?;
    let file = open_without_blocking(path)?;
    // The path may have been swapped between the look and the open: what counts is what was opened.
    check(&file.metadata()?, max_bytes)?;
    let mut bytes = Vec::with_capacity(metadata.len().min(max_bytes) as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(FileProblem::TooLarge {
            limit_kib: max_bytes / 1024,
        });
    }
    Ok(bytes)
}

/// A regular file within the size limit, or the problem.
fn check(metadata: &std::fs::Metadata, max_bytes: u64) -> Result<(), FileProblem> {
    if !metadata.is_file() {
        return Err(FileProblem::NotAFile(kind(&metadata.file_type())));
    }
    if metadata.len() > max_bytes {
        return Err(FileProblem::TooLarge {
            limit_kib: max_bytes / 1024,
        });
    }
    Ok(())
}

/// What a file that is not a regular file is, for the error message.
fn kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "something other than a file"
    }
}

/// Opens for reading without ever blocking in `open` (a FIFO swapped in after the first look
/// would otherwise block until a writer comes); regular files read the same either way.
fn open_without_blocking(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let temp = tempfile::Builder::new()
            .prefix("hle-files-")
            .tempdir()
            .unwrap();
        let dir = temp.path();
        let small = dir.join("small");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(read_bounded(&small, 3).unwrap(), b"abc");
        assert!(matches!(
            read_bounded(&small, 2),
            Err(FileProblem::TooLarge { .. })
        ));
        let fifo = dir.join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        // Returns at once (a FIFO opened for reading would block until a writer comes).
        match read_bounded(&fifo, 1024) {
            Err(FileProblem::NotAFile(kind)) => assert_eq!(kind, "a FIFO (named pipe)"),
            other => panic!("a FIFO was not refused: {other:?}"),
        }
        match read_bounded(Path::new("/dev/zero"), 1024) {
            Err(FileProblem::NotAFile(kind)) => assert_eq!(kind, "a character device"),
            other => panic!("/dev/zero was not refused: {other:?}"),
        }
        assert!(matches!(
            read_bounded(dir, 1024),
            Err(FileProblem::NotAFile("a directory"))
        ));
    }
}
