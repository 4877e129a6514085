//! Fresh means fresh: an instance never sees the memory of whatever ran in its pool slot
//! before, of its own tenant or another, even when the kernel swapped that memory out
//! while the earlier instance was alive (wasmtime #14357: PAGEMAP_SCAN skipped swapped
//! pages, so the slot kept them). The test turns swap on if the machine has none, pages
//! the node's memory out in the middle of a request, and then reads the slot again.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{Node, proc_status_bytes, tenant, write_config_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Swap for the length of the test: the machine's own, or a file turned on here.
struct Swap {
    file: Option<PathBuf>,
}

impl Swap {
    fn ensure() -> Swap {
        if swap_is_active() {
            return Swap { file: None };
        }
        let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fresh-memory.swap");
        let _ = Command::new("swapoff").arg(&file).output();
        let mut out = std::fs::File::create(&file).expect("create the swap file");
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..256 {
            out.write_all(&chunk).expect("fill the swap file");
        }
        out.sync_all().expect("sync the swap file");
        drop(out);
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod the swap file");
        run("mkswap", &[file.as_os_str()]);
        run("swapon", &[file.as_os_str()]);
        assert!(
            swap_is_active(),
            "swapon succeeded but /proc/swaps lists nothing"
        );
        Swap { file: Some(file) }
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = Command::new("swapoff").arg(file).output();
            let _ = std::fs::remove_file(file);
        }
    }
}

fn run(program: &str, args: &[&std::ffi::OsStr]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} failed (this test needs swap, or root to turn a swap file on): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn swap_is_active() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|swaps| swaps.lines().count() > 1)
}

/// Asks the kernel to swap out every writable private mapping of `pid` now
/// (`process_madvise(MADV_PAGEOUT)`): the memory pressure of a busy node, on demand.
fn page_out(pid: u32) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    // SAFETY: plain syscalls on a pid we own; the iovecs describe the target's mappings
    // and are only read by the kernel.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") || !perms.ends_with('p') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let iov = libc::iovec {
            iov_base: start as *mut libc::c_void,
            iov_len: end - start,
        };
        // A mapping that goes away meanwhile, or pages the kernel will not page out,
        // only make the call fail for that range; the swapped total is checked below.
        unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                pidfd,
                &iov as *const libc::iovec,
                1usize,
                libc::MADV_PAGEOUT,
                0u32,
            )
        };
    }
    unsafe { libc::close(pidfd as i32) };
}

/// An origin that tells the test when a request arrives and answers it only when the
/// test says so: the guest's instance stays alive, mid-request, for as long as needed.
async fn holding_origin() -> (String, mpsc::Receiver<oneshot::Sender<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (arrived, arrivals) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let (release, released) = oneshot::channel();
                if arrived.send(release).await.is_err() {
                    return;
                }
                let _ = released.await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld")
                    .await;
            });
        }
    });
    (url, arrivals)
}

#[tokio::test]
async fn a_slot_whose_dirty_pages_were_swapped_out_is_still_fresh_for_the_next_tenant() {
    let _swap = Swap::ensure();
    let (origin, mut arrivals) = holding_origin().await;
    let extra = format!("outbound = [{origin:?}]\nlimits = {{ concurrency = 1 }}");
    let tenants = [
        tenant("writer", "limits", &["/writer"], &extra),
        tenant("reader", "limits", &["/reader"], &extra),
    ]
    .join("\n");
    let dir = tempfile::tempdir().expect("temp dir");
    // Two slots: the reader lands where the writer was.
    let (config, addr) = write_config_with(dir.path(), 2, &tenants);
    let node = Node::start_with(dir, &config, addr).await;
    assert_eq!(node.get("localhost", "/reader/sniff").await.body, "0");

    // Every other page of 1 MiB: 128 separate dirty runs, more than one scan's buffer
    // of 32 regions holds, so the reset must resume the scan to find them all.
    let scribble_path = format!("/writer/scribble?kib=1024&stride=2&hold={origin}/hold");
    let scribble = node.get("localhost", &scribble_path);
    let swap_it_out = async {
        let release = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .expect("the writer reached the origin")
            .expect("origin running");
        let before = proc_status_bytes(node.pid(), "VmSwap");
        page_out(node.pid());
        let swapped = proc_status_bytes(node.pid(), "VmSwap").saturating_sub(before);
        release.send(()).expect("release the writer");
        swapped
    };
    let (scribbled, swapped) = tokio::join!(scribble, swap_it_out);
    assert!(
        swapped >= 512 * 1024,
        "the kernel swapped out only {swapped} bytes of the node"
    );
    assert_eq!(scribbled.status, 200, "{}", scribbled.body);
    assert_eq!(scribbled.body, "scribbled 524288 bytes");

    for path in ["/reader/sniff", "/writer/sniff", "/reader/sniff"] {
        // The writer's one slot (concurrency = 1) is freed as its instance is torn down, a
        // moment after its response: until then its tenant answers 503 busy.
        let started = std::time::Instant::now();
        let sniff = loop {
            let reply = node.get("localhost", path).await;
            if reply.status != 503 || started.elapsed() > Duration::from_secs(10) {
                break reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            (sniff.status, sniff.body.as_str()),
            (200, "0"),
            "{path} saw bytes an earlier instance wrote"
        );
    }
}

/// A warm slot keeps resident, and its reset rewrites, only the pages its requests
/// touched. The kernel reports an empty page-table entry as "written" too; a reset that
/// took those faulted in and memset hello's whole 1 MiB stack region on every request,
/// 1.05 MiB per warm slot where a request touches a few pages.
#[tokio::test]
async fn a_warm_slot_keeps_only_the_pages_its_requests_touched() {
    const TOKEN: &str = "fresh-memory-admin-token-0123";
    let launched =
        support::launch_with_admin(TOKEN, 16, &tenant("hello", "hello", &["/"], "")).await;
    for _ in 0..20 {
        assert_eq!(launched.node.get("localhost", "/").await.status, 200);
    }
    let slots = support::metric(launched.admin, TOKEN, "outpost_pool_warm_slots").await;
    let resident = support::metric(launched.admin, TOKEN, "outpost_pool_resident_bytes").await;
    assert!(slots >= 1.0, "no warm slot after 20 requests");
    let per_slot = resident / slots;
    assert!(
        per_slot < 256.0 * 1024.0,
        "{per_slot:.0} bytes resident per warm slot ({resident} over {slots} slots): \
         the reset kept pages no request touched"
    );
}
