//! What `sim` prints on stdout goes through [`outln!`](crate::outln) instead of `println!`, which
//! panics once the reader has gone (`sim list | head -2`). The write error travels up with `?`;
//! `main` sees it with [`is_closed_pipe`] and ends quietly with status 0, as `cat` and `ls` do.

use std::io::{self, Write as _};

/// Writes one line to stdout; an error (a closed pipe) is returned, never a panic.
pub fn line(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// `println!` that returns the write's `io::Result` instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

/// Whether `error` is, or was caused by, a write to a reader that has gone: the end of a
/// pipeline such as `| head`, not a failure of the run.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
