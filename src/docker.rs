//! Docker: which containers exist, read-only, from the Engine API on its unix socket, or from
//! dockerd's state files on disk when the daemon does not answer.
//!
//! Only GETs. Connecting is not quite free: where docker.socket is active and docker.service
//! stopped, systemd starts dockerd on the first connection; a caller that must not start it
//! checks the unit first.

use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Engine API socket dockerd listens on by default.
pub const SOCKET: &str = "/run/docker.sock";

/// Where dockerd keeps one directory per container (below the default data root).
pub const CONTAINERS_DIR: &str = "/var/lib/docker/containers";

/// How long one request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Replies larger than this are refused: the API's answers here are a few KiB per container.
const MAX_REPLY: usize = 16 << 20;

/// What `GET /info` says, as far as dropfix needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineInfo {
    /// `ContainersRunning`.
    pub containers_running: u64,
    /// `LiveRestoreEnabled`: containers keep running while dockerd restarts.
    pub live_restore: bool,
    /// `ServerVersion`, e.g. `20.10.24+dfsg1`.
    pub server_version: String,
}

/// One container, running or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Full ID (64 hex digits).
    pub id: String,
    /// Name without docker's leading `/`.
    pub name: String,
    /// `State.Running`.
    pub running: bool,
    /// `State.Pid`: the container's init process on the host, 0 when not running.
    pub pid: u32,
    /// `NetworkSettings.SandboxKey`, e.g. `/var/run/docker/netns/0123abcd4567`; empty when the
    /// container has no sandbox (stopped).
    pub sandbox_key: String,
}

/// Where a container list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The Engine API answered.
    Api,
    /// dockerd did not answer; its per-container state files were read instead.
    Disk,
    /// Neither: no list.
    None,
}

/// The containers [`lookup`] found, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Containers {
    /// The containers, sorted by name.
    pub list: Vec<Container>,
    /// Where the list came from.
    pub source: Source,
    /// Why the API did not answer, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why the Engine API gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerError {
    /// No socket at the path: dockerd is not running (or listens elsewhere).
    NotRunning(PathBuf),
    /// The socket exists but the connection failed (nobody listening, or no permission).
    Refused(PathBuf, String),
    /// No complete reply within the time allowed.
    Timeout(PathBuf),
    /// A reply that is not the HTTP and JSON expected.
    BadReply(String),
}

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerError::NotRunning(p) => {
                write!(
                    f,
                    "no docker socket at {} (dockerd not running)",
                    p.display()
                )
            }
            DockerError::Refused(p, why) => write!(f, "cannot connect to {}: {why}", p.display()),
            DockerError::Timeout(p) => write!(
                f,
                "{} did not answer within {} s",
                p.display(),
                TIMEOUT.as_secs()
            ),
            DockerError::BadReply(why) => write!(f, "unexpected reply from dockerd: {why}"),
        }
    }
}

impl std::error::Error for DockerError {}

/// `GET /info`: how many containers run, and whether live restore is on.
pub fn info(sock: &Path) -> Result<EngineInfo, DockerError> {
    let v = get_json(sock, "/info")?;
    Ok(EngineInfo {
        containers_running: v["ContainersRunning"].as_u64().unwrap_or(0),
        live_restore: v["LiveRestoreEnabled"].as_bool().unwrap_or(false),
        server_version: v["ServerVersion"].as_str().unwrap_or_default().to_string(),
    })
}

/// Every container (`GET /containers/json?all=1`), each inspected for its PID and sandbox.
/// A container removed between the list and its inspection is left out.
pub fn containers(sock: &Path) -> Result<Vec<Container>, DockerError> {
    let list = get_json(sock, "/containers/json?all=1")?;
    let Some(list) = list.as_array() else {
        return Err(DockerError::BadReply(
            "GET /containers/json: not a JSON array".into(),
        ));
    };
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let id = c["Id"].as_str().unwrap_or_default();
        // The ID goes into a request path: hex digits only.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DockerError::BadReply(format!(
                "GET /containers/json: container ID {id:?}"
            )));
        }
        let path = format!("/containers/{id}/json");
        let reply = get(sock, &path)?;
        if reply.status == 404 {
            continue;
        }
        out.push(container_of(&reply.json(&path)?, "Id"));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every container dockerd keeps state for under `root` (normally `/`):
/// `<root>/var/lib/docker/containers/*/config.v2.json`. Unreadable files are skipped; what
/// they say may be out of date while dockerd is down.
pub fn containers_from_disk(root: &Path) -> Vec<Container> {
    read_disk(root).unwrap_or_default()
}

fn read_disk(root: &Path) -> Option<Vec<Container>> {
    let dir = root.join(CONTAINERS_DIR.trim_start_matches('/'));
    let rd = std::fs::read_dir(dir).ok()?;
    let mut out: Vec<Container> = rd
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("config.v2.json")).ok())
        .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| container_of(&v, "ID"))
        .filter(|c| !c.id.is_empty())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Some(out)
}

/// The API's inspection and config.v2.json share a shape; only the ID's key differs.
fn container_of(v: &Value, id_key: &str) -> Container {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Container {
        id: s(&v[id_key]),
        name: s(&v["Name"]).trim_start_matches('/').to_string(),
        running: v["State"]["Running"].as_bool().unwrap_or(false),
        pid: v["State"]["Pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        sandbox_key: s(&v["NetworkSettings"]["SandboxKey"]),
    }
}

/// The containers from the API at `sock`, else from the state files under `root`.
pub fn lookup(sock: &Path, root: &Path) -> Containers {
    match containers(sock) {
        Ok(list) => Containers {
            list,
            source: Source::Api,
            note: None,
        },
        Err(e) => {
            let (list, source) = match read_disk(root) {
                Some(list) => (list, Source::Disk),
                None => (Vec::new(), Source::None),
            };
            Containers {
                list,
                source,
                note: Some(e.to_string()),
            }
        }
    }
}

/// `GET path` on the socket, the reply's body parsed as JSON (status 200 only).
fn get_json(sock: &Path, path: &str) -> Result<Value, DockerError> {
    get(sock, path)?.json(path)
}

/// An HTTP reply: status code and the (de-chunked) body.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    /// The body as JSON when the status is 200; else the API's `message`.
    fn json(&self, path: &str) -> Result<Value, DockerError> {
        if self.status != 200 {
            let msg = serde_json::from_slice::<Value>(&self.body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(DockerError::BadReply(
                format!("GET {path}: HTTP {} {msg}", self.status)
                    .trim_end()
                    .to_string(),
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| DockerError::BadReply(format!("GET {path}: invalid JSON: {e}")))
    }
}

/// One HTTP/1.1 GET with `Connection: close`, so the reply ends where the stream does.
fn get(sock: &Path, path: &str) -> Result<Reply, DockerError> {
    let deadline = Instant::now() + TIMEOUT;
    let mut s = UnixStream::connect(sock).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DockerError::NotRunning(sock.to_path_buf()),
        _ => DockerError::Refused(sock.to_path_buf(), io_reason(&e)),
    })?;
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            DockerError::Timeout(sock.to_path_buf())
        }
        _ => DockerError::BadReply(format!("GET {path}: {}", io_reason(&e))),
    };
    s.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(io_err)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        // One deadline for the whole reply, so a server that trickles bytes cannot stall us.
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| DockerError::Timeout(sock.to_path_buf()))?;
        s.set_read_timeout(Some(left)).map_err(io_err)?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
        if raw.len() > MAX_REPLY {
            return Err(DockerError::BadReply(format!(
                "GET {path}: reply larger than {MAX_REPLY} bytes"
            )));
        }
        if reply_complete(&raw) {
            break;
        }
    }
    parse_reply(&raw).map_err(|why| DockerError::BadReply(format!("GET {path}: {why}")))
}

/// `Permission denied (os error 13)` -> `permission denied`.
fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s.to_string(),
    }
}

/// Whether a reply with a `Content-Length` has all its bytes (a server may keep the
/// connection open a moment after the last byte despite `Connection: close`).
fn reply_complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| raw.len() >= end + 4 + n)
}

/// Status line, headers and body of an HTTP/1.x reply; the body de-chunked.
fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let status = head.lines().next().unwrap_or_default();
    let mut f = status.split(' ');
    let (proto, code) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
    if !proto.starts_with("HTTP/1.") {
        return Err(format!("not HTTP: {:?}", truncate(status)));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("status line {:?}", truncate(status)))?;
    let body = &raw[end + 4..];
    let body =
        if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            dechunk(body)?
        } else {
            match header(head, "content-length") {
                Some(n) => {
                    let n: usize = n.parse().map_err(|_| format!("Content-Length {n:?}"))?;
                    body.get(..n)
                        .map(<[u8]>::to_vec)
                        .ok_or_else(|| format!("body ends after {} of {n} bytes", body.len()))?
                }
                None => body.to_vec(),
            }
        };
    Ok(Reply { status, body })
}

/// A header's value (names compare case-insensitively).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `Transfer-Encoding: chunked`: hex size line, data, CRLF, ..., a zero-size chunk.
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n").ok_or("chunk size line without end")?;
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| "chunk size is not text")?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(hex, 16).map_err(|_| format!("chunk size {hex:?}"))?;
        b = &b[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        let data = b.get(..n).ok_or("reply ends inside a chunk")?;
        out.extend_from_slice(data);
        b = b.get(n + 2..).ok_or("reply ends after a chunk")?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    const ID_A: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";
    const ID_B: &str = "bbbb000000000000000000000000000000000000000000000000000000000002";

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// The same body in chunks of at most 7 bytes, the way Go's server sends long replies.
    fn chunked(body: &str) -> String {
        let mut s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
        for c in body.as_bytes().chunks(7) {
            s.push_str(&format!("{:x}\r\n", c.len()));
            s.push_str(std::str::from_utf8(c).unwrap());
            s.push_str("\r\n");
        }
        s.push_str("0\r\n\r\n");
        s
    }

    fn inspect(id: &str, name: &str, pid: u32, key: &str) -> String {
        format!(
            r#"{{"Id":"{id}","Name":"/{name}","State":{{"Status":"running","Running":{},"Pid":{pid}}},"NetworkSettings":{{"SandboxID":"x","SandboxKey":"{key}"}}}}"#,
            pid != 0
        )
    }

    /// A fake Engine: answers each request by its request line, then closes the connection.
    /// Returns the socket path and the request lines it saw.
    fn engine(
        dir: &Path,
        routes: Vec<(&'static str, String)>,
    ) -> (PathBuf, thread::JoinHandle<Vec<String>>) {
        let path = dir.join("docker.sock");
        let l = UnixListener::bind(&path).unwrap();
        let h = thread::spawn(move || {
            let mut seen = Vec::new();
            for conn in l.incoming() {
                let mut c = conn.unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while find(&req, b"\r\n\r\n").is_none() {
                    let n = c.read(&mut b).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&b[..n]);
                }
                let req = String::from_utf8(req).unwrap();
                let line = req.lines().next().unwrap_or_default().to_string();
                if line == "GET /stop HTTP/1.1" {
                    break;
                }
                assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
                let reply = routes
                    .iter()
                    .find(|(r, _)| line == format!("GET {r} HTTP/1.1"))
                    .map(|(_, reply)| reply.clone())
                    .unwrap_or_else(|| {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 29\r\n\r\n{\"message\":\"page not found\"}\n"
                            .to_string()
                    });
                c.write_all(reply.as_bytes()).unwrap();
                seen.push(line);
            }
            seen
        });
        (path, h)
    }

    fn stop(sock: &Path, h: thread::JoinHandle<Vec<String>>) -> Vec<String> {
        let _ = get(sock, "/stop");
        h.join().unwrap()
    }

    #[test]
    fn info_reads_running_count_live_restore_and_version() {
        let t = tempfile::tempdir().unwrap();
        let body = r#"{"ID":"X","Containers":3,"ContainersRunning":2,"LiveRestoreEnabled":true,"ServerVersion":"20.10.24+dfsg1"}"#;
        let (sock, h) = engine(t.path(), vec![("/info", ok(body))]);
        assert_eq!(
            info(&sock).unwrap(),
            EngineInfo {
                containers_running: 2,
                live_restore: true,
                server_version: "20.10.24+dfsg1".into()
            }
        );
        stop(&sock, h);
    }

    #[test]
    fn containers_are_listed_then_inspected_and_chunked_replies_are_joined() {
        let t = tempfile::tempdir().unwrap();
        let list =
            format!(r#"[{{"Id":"{ID_B}","Names":["/web"]}},{{"Id":"{ID_A}","Names":["/db"]}}]"#);
        let (sock, h) = engine(
            t.path(),
            vec![
                ("/containers/json?all=1", chunked(&list)),
                (
                    "/containers/aaaa000000000000000000000000000000000000000000000000000000000001/json",
                    chunked(&inspect(ID_A, "db", 4242, "/var/run/docker/netns/0123abcd4567")),
                ),
                (
                    "/containers/bbbb000000000000000000000000000000000000000000000000000000000002/json",
                    ok(&inspect(ID_B, "web", 0, "")),
                ),
            ],
        );
        let got = containers(&sock).unwrap();
        assert_eq!(
            got,
            vec![
                Container {
                    id: ID_A.into(),
                    name: "db".into(),
                    running: true,
                    pid: 4242,
                    sandbox_key: "/var/run/docker/netns/0123abcd4567".into()
                },
                Container {
                    id: ID_B.into(),
                    name: "web".into(),
                    running: false,
                    pid: 0,
                    sandbox_key: String::new()
                },
            ]
        );
        let seen = stop(&sock, h);
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn container_removed_between_list_and_inspect_is_left_out() {
        let t = tempfile::tempdir().unwrap();
        let list = format!(r#"[{{"Id":"{ID_A}"}},{{"Id":"{ID_B}"}}]"#);
        let (sock, h) = engine(
            t.path(),
            vec![
                ("/containers/json?all=1", ok(&list)),
                (
                    "/containers/bbbb000000000000000000000000000000000000000000000000000000000002/json",
                    ok(&inspect(ID_B, "web", 7, "/var/run/docker/netns/b")),
                ),
            ],
        );
        let got = containers(&sock).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "web");
        stop(&sock, h);
    }

    #[test]
    fn missing_socket_means_not_running() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("docker.sock");
        let e = info(&sock).unwrap_err();
        assert_eq!(e, DockerError::NotRunning(sock.clone()));
        assert_eq!(
            e.to_string(),
            format!(
                "no docker socket at {} (dockerd not running)",
                sock.display()
            )
        );
    }

    #[test]
    fn socket_without_listener_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("docker.sock");
        drop(UnixListener::bind(&sock).unwrap()); // the file stays, nobody listens
        let e = info(&sock).unwrap_err();
        assert!(matches!(e, DockerError::Refused(..)), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("cannot connect to {}: connection refused", sock.display())
        );
    }

    #[test]
    fn silent_daemon_times_out() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("docker.sock");
        // Bound and listening, never accepted: connect and write succeed, no reply comes.
        let _l = UnixListener::bind(&sock).unwrap();
        let t0 = Instant::now();
        let e = info(&sock).unwrap_err();
        assert_eq!(e, DockerError::Timeout(sock.clone()));
        assert!(t0.elapsed() < TIMEOUT + Duration::from_secs(2));
        assert!(e.to_string().ends_with("did not answer within 2 s"), "{e}");
    }

    #[test]
    fn bad_json_and_error_status_are_bad_replies() {
        let t = tempfile::tempdir().unwrap();
        let (sock, h) = engine(
            t.path(),
            vec![
                ("/info", ok("{\"ContainersRunning\": 2,")),
                (
                    "/containers/json?all=1",
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 26\r\n\r\n{\"message\":\"disk on fire\"}".into(),
                ),
            ],
        );
        let e = info(&sock).unwrap_err();
        assert!(
            matches!(&e, DockerError::BadReply(w) if w.starts_with("GET /info: invalid JSON")),
            "{e:?}"
        );
        let e = containers(&sock).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected reply from dockerd: GET /containers/json?all=1: HTTP 500 disk on fire"
        );
        stop(&sock, h);
    }

    #[test]
    fn reply_parsing_handles_lengths_chunks_and_garbage() {
        let body = |raw: &[u8]| parse_reply(raw).unwrap().body;
        assert_eq!(body(ok("{}").as_bytes()), b"{}");
        assert_eq!(
            body(chunked("{\"a\":\"0123456789\"}").as_bytes()),
            b"{\"a\":\"0123456789\"}"
        );
        assert_eq!(
            parse_reply(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}").unwrap(),
            Reply {
                status: 404,
                body: b"{}".to_vec()
            }
        );
        assert_eq!(
            body(b"HTTP/1.0 200 OK\r\n\r\n[1]"),
            b"[1]",
            "HTTP/1.0: the body runs to the end"
        );
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(
            parse_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(reply_complete(ok("{}").as_bytes()));
        assert!(!reply_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}"
        ));
    }

    fn write_config(root: &Path, id: &str, json: &str) {
        let d = root.join("var/lib/docker/containers").join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.v2.json"), json).unwrap();
    }

    #[test]
    fn state_files_stand_in_when_the_api_does_not_answer() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        write_config(
            &root,
            ID_A,
            &format!(
                r#"{{"ID":"{ID_A}","Name":"/db","State":{{"Running":true,"Pid":4242}},"NetworkSettings":{{"SandboxKey":"/var/run/docker/netns/0123abcd4567"}}}}"#
            ),
        );
        write_config(
            &root,
            ID_B,
            &format!(r#"{{"ID":"{ID_B}","Name":"/web","State":{{"Running":false,"Pid":0}}}}"#),
        );
        write_config(&root, "cccc", "{ not json");
        std::fs::create_dir_all(root.join("var/lib/docker/containers/dddd")).unwrap();

        let disk = containers_from_disk(&root);
        assert_eq!(disk.len(), 2, "{disk:?}");
        assert_eq!(
            disk[0],
            Container {
                id: ID_A.into(),
                name: "db".into(),
                running: true,
                pid: 4242,
                sandbox_key: "/var/run/docker/netns/0123abcd4567".into()
            }
        );
        assert_eq!((disk[1].name.as_str(), disk[1].running), ("web", false));

        let sock = t.path().join("docker.sock");
        let c = lookup(&sock, &root);
        assert_eq!(c.source, Source::Disk);
        assert_eq!(c.list, disk);
        assert_eq!(
            c.note.as_deref(),
            Some(
                format!(
                    "no docker socket at {} (dockerd not running)",
                    sock.display()
                )
                .as_str()
            )
        );

        let none = lookup(&sock, &t.path().join("empty"));
        assert_eq!((none.source, none.list.len()), (Source::None, 0));
        assert!(containers_from_disk(&t.path().join("empty")).is_empty());
    }

    #[test]
    fn lookup_prefers_the_api() {
        let t = tempfile::tempdir().unwrap();
        let (sock, h) = engine(t.path(), vec![("/containers/json?all=1", ok("[]"))]);
        let c = lookup(&sock, Path::new("/nonexistent/dropfix"));
        assert_eq!(
            c,
            Containers {
                list: Vec::new(),
                source: Source::Api,
                note: None
            }
        );
        stop(&sock, h);
    }
}
