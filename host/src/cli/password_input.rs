//! Reading a password from standard input: one line. At a terminal, a prompt first (on standard
//! error) and the typing not echoed, so the password is neither left on the screen nor mistaken
//! for a command that hangs; from a pipe (`echo … |`, scripts, tests), the line as it is.

use std::io::{BufRead, IsTerminal, Write};

/// One line of standard input, without its line ending.
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let at_terminal = stdin.is_terminal();
    // Echo off before the prompt shows: what is typed after it is never shown.
    let _quiet = at_terminal.then(NoEcho::start).flatten();
    if at_terminal {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if at_terminal {
        // The Enter the user typed was not echoed either.
        eprintln!();
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The terminal's echo turned off until dropped (restored even when reading fails).
struct NoEcho {
    #[cfg(unix)]
    saved: libc::termios,
}

impl NoEcho {
    #[cfg(unix)]
    fn start() -> Option<NoEcho> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; a zeroed termios is a valid
        // value to be overwritten by tcgetattr, which we check.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return None;
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
                return None;
            }
            Some(NoEcho { saved })
        }
    }

    #[cfg(not(unix))]
    fn start() -> Option<NoEcho> {
        None
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores the attributes tcgetattr returned for the same fd.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}
