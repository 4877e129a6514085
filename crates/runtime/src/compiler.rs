//! Where components are compiled. On a node, in a child process (`outpost
//! compile-component`) that the node stops past `node.compile_memory` of memory or
//! `node.compile_timeout`: a component built to compile for minutes or to need
//! gigabytes fails its own deploy, and the node, its memory and its other tenants are
//! untouched. The child writes the artifact into the compile cache, and the node maps
//! it in from there.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use outpost_config::CompileLimits;
use wasmtime::{Engine, InstanceAllocationStrategy};

/// How often the compiler's memory is looked at: it can outgrow the limit by what it
/// allocates in this time before it is stopped.
const MEMORY_CHECK: Duration = Duration::from_millis(10);

/// The subcommand of the node's binary that compiles one component.
pub const COMPILE_SUBCOMMAND: &str = "compile-component";

/// Why a component did not compile.
#[derive(Debug, Clone)]
pub(crate) enum CompileFailure {
    /// The bytes are not a valid component (the compiler's own explanation).
    Invalid(String),
    /// Compiling was stopped at a limit, or the compiler could not run.
    Stopped(String),
}

impl From<wasmtime::Error> for CompileFailure {
    fn from(error: wasmtime::Error) -> CompileFailure {
        CompileFailure::Invalid(format!("{error:#}"))
    }
}

/// How a runtime compiles components.
#[derive(Debug, Clone)]
pub enum Compiler {
    /// In this process, unbounded: for tools, tests and benchmarks that load components
    /// they trust.
    InProcess,
    /// In `<program> compile-component` child processes, within the node's
    /// [`CompileLimits`]. `program` is the node's own binary.
    Isolated { program: PathBuf },
}

/// Compiles `wasm` in a child process into the artifact file `out` (written under a
/// temporary name and renamed); the reason it could not, in words for the operator.
pub(crate) fn compile_in_child(
    program: &Path,
    limits: &CompileLimits,
    max_instances: u32,
    wasm: &[u8],
    out: &Path,
) -> Result<(), CompileFailure> {
    let mut child = Command::new(program)
        .arg(COMPILE_SUBCOMMAND)
        .arg("--max-instances")
        .arg(max_instances.to_string())
        .arg("--out")
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CompileFailure::Stopped(format!(
                "cannot start the compiler ({}): {e}",
                program.display()
            ))
        })?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (exited, status) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // The child reads all of its input before it compiles; a child that died
            // early makes this write fail, and its exit status says why.
            let _ = stdin.write_all(wasm);
            drop(stdin);
            let mut said = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut said);
            let _ = exited.send((child.wait(), said));
        });
        let deadline = Instant::now() + limits.timeout;
        loop {
            match status.recv_timeout(MEMORY_CHECK) {
                Ok((Ok(status), said)) => {
                    return outcome(status, &String::from_utf8_lossy(&said));
                }
                Ok((Err(e), _)) => {
                    let reason = format!("the compiler could not be waited for: {e}");
                    return Err(CompileFailure::Stopped(reason));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let reason = "the compiler's waiting thread ended early".to_string();
                    return Err(CompileFailure::Stopped(reason));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let stop = if Instant::now() >= deadline {
                format!(
                    "compiling took longer than node.compile_timeout ({}s) and was stopped: \
                     the component is built to be slow to compile; make it smaller, or \
                     raise node.compile_timeout",
                    limits.timeout.as_secs_f64()
                )
            } else if anonymous_memory(pid).is_some_and(|bytes| bytes > limits.memory) {
                format!(
                    "compiling needed more than node.compile_memory ({}) and was stopped: \
                     the component is built to need that much to compile; make it smaller, \
                     or raise node.compile_memory",
                    outpost_config::format_size(limits.memory)
                )
            } else {
                continue;
            };
            // SAFETY: `pid` is our child and not yet reaped: the thread that reaps it
            // has not reported.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            return Err(CompileFailure::Stopped(stop));
        }
    })
}

/// The memory a process has in use of its own (heap, stacks): `RssAnon`, which leaves
/// out the binary's mapped code, so the limit counts what compiling takes.
fn anonymous_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

fn outcome(status: ExitStatus, said: &str) -> Result<(), CompileFailure> {
    use std::os::unix::process::ExitStatusExt;
    let said = said.trim();
    match (status.success(), status.signal()) {
        (true, _) => Ok(()),
        (false, Some(signal)) => Err(CompileFailure::Stopped(format!(
            "the compiler was killed by signal {signal}{}",
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ))),
        // The child prints the compiler's own error, as an in-process compile gives it.
        (false, None) => Err(CompileFailure::Invalid(said.to_string())),
    }
}

/// The body of `outpost compile-component`: reads a component from stdin, compiles it
/// for the engine a node with `max_instances` slots runs, and writes the artifact to
/// `out`. The node that started it watches its memory and time.
pub fn compile_component_main(max_instances: u32, out: &Path) -> Result<(), String> {
    no_core_dumps();
    // A node killed mid-compile takes its compiler with it. (The thread that started
    // this child waits for it, so the signal cannot come early.)
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets this process's death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut wasm = Vec::new();
    std::io::stdin()
        .read_to_end(&mut wasm)
        .map_err(|e| format!("reading the component: {e}"))?;
    // The node's engine settings exactly (they decide the artifact's compatibility),
    // with instances allocated on demand: the pool's reservation is the node's business.
    let mut config = crate::engine::engine_config(max_instances);
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
    let artifact = engine
        .precompile_component(&wasm)
        .map_err(|e| format!("{e:#}"))?;
    crate::compile_cache::write_artifact(out, &artifact)
        .map_err(|e| format!("writing the compiled artifact {}: {e}", out.display()))
}

/// A compiler that fails leaves no core dump.
fn no_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}
