//! Child processes that run one test of the running test binary again, so
//! that a test can spread its work over several real processes (each with a
//! `Cache` of its own). The child is told what to do through environment
//! variables; its stdout and stderr are collected for failure messages.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// A child process running one test of this binary; killed (SIGKILL) when
/// dropped while it runs.
pub struct ChildProcess {
    name: String,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl ChildProcess {
    /// Runs the test `test` (matched `--exact`) of the current test binary
    /// in a new process with `env` set; `name` appears in failure messages.
    pub fn spawn(name: &str, test: &str, env: &[(&str, String)]) -> ChildProcess {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("re-executes the test binary");
        let output = Arc::new(Mutex::new(Vec::new()));
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        let readers = pipes
            .into_iter()
            .flatten()
            .map(|mut pipe| {
                let output = Arc::clone(&output);
                thread::spawn(move || {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = pipe.read(&mut buf) {
                        output
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend_from_slice(&buf[..n]);
                    }
                })
            })
            .collect();
        ChildProcess {
            name: name.to_owned(),
            child,
            output,
            readers,
        }
    }

    /// Everything the child wrote to stdout and stderr, once it has exited.
    pub fn output(&mut self) -> String {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Waits for the child to exit, for at most `limit` (then kills it).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    /// Waits for the child to pass its test; panics with its output if it
    /// fails or runs longer than `limit`.
    pub fn succeeds(mut self, limit: Duration) {
        let status = self.wait(limit);
        if status.is_some_and(|s| s.success()) {
            return;
        }
        let name = self.name.clone();
        panic!(
            "child `{name}` {}; its output:\n{}",
            match status {
                Some(status) => format!("failed ({status})"),
                None => format!("did not finish within {limit:?}"),
            },
            self.output()
        );
    }

    /// SIGKILL, as `kill -9` does.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
