//! The two libc calls the bench needs: raising RLIMIT_NOFILE and reading the clock tick rate.

use std::io;

/// Raises this process's open-files soft limit to its hard limit; returns the new soft limit.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call, and
    // RLIMIT_NOFILE is a valid resource; getrlimit/setrlimit touch nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat (usually 100).
#[allow(unsafe_code)]
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no pointer arguments.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nofile_limit_is_raised_to_something() {
        assert!(raise_nofile_limit().unwrap() >= 64);
    }

    #[test]
    fn clock_ticks_are_sane() {
        let t = clock_ticks_per_sec();
        assert!((1..=100_000).contains(&t));
    }
}
