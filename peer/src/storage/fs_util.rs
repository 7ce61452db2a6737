//! Durable file writes (temp file, `sync_all`, rename, fsync of the directory) and positioned
//! reads and writes, on Unix and on Windows.

#[cfg(unix)]
use std::fs::File;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file whole.
/// The file is created with `mode` (for example 0o600 for a secret) on Unix. On Windows the file
/// inherits the folder's access list (a user's profile is private to them), and the directory
/// is not synced: Windows cannot open a directory as a file, and NTFS journals the rename.
pub fn write_durable(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename in `dir` durable: fsync of the directory on Unix; nothing on Windows, which
/// cannot open a directory as a file and whose NTFS journals the rename.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Options to open a file that will be renamed while it is open (a download's `.part` file):
/// on Windows that needs the file shared for deletion, which the Unix semantics give anyway.
pub fn renamable(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(windows)]
    {
        // FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
        std::os::windows::fs::OpenOptionsExt::share_mode(options, 0x1 | 0x2 | 0x4);
    }
    options
}

/// Reads exactly `buf.len()` bytes of `file` at `offset`. (On Windows this also moves the
/// file's cursor; nothing here reads or writes at the cursor.)
pub fn read_exact_at(file: &fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match file.seek_read(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Writes all of `data` to `file` at `offset` (see [`read_exact_at`] about the cursor).
pub fn write_all_at(file: &fs::File, data: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, data, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut data, mut offset) = (data, offset);
        while !data.is_empty() {
            match file.seek_write(data, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, data, offset);
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positioned_writes_and_reads_meet_and_a_short_file_is_an_eof() {
        let dir = std::env::temp_dir().join(format!("fs-util-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        write_all_at(&f, b"world", 6).unwrap();
        write_all_at(&f, b"hello ", 0).unwrap();
        let mut buf = [0u8; 11];
        read_exact_at(&f, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello world");
        let mut past = [0u8; 4];
        let e = read_exact_at(&f, &mut past, 9).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // Windows cannot replace a file that is open (without FILE_SHARE_DELETE).
        drop(f);
        write_durable(&path, b"replaced", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"replaced");
        // A file opened `renamable` can be renamed while open (a download's last step).
        let part = dir.join("g.part");
        let g = renamable(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true),
        )
        .open(&part)
        .unwrap();
        write_all_at(&g, b"done", 0).unwrap();
        g.sync_all().unwrap();
        fs::rename(&part, dir.join("g.bin")).unwrap();
        sync_dir(&dir).unwrap();
        drop(g);
        assert_eq!(fs::read(dir.join("g.bin")).unwrap(), b"done");
        let _ = fs::remove_dir_all(&dir);
    }
}
