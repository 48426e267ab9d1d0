//! Test harness: runs the real binary in a hermetic temp home, starts real
//! `docker-registry` instances on free loopback ports, builds OCI layouts and
//! pushes them with real `skopeo`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// Whether a peer binary is available. With `IMAGELOCK_REQUIRE_PEERS=1` (CI) a
/// missing peer is a test failure, never a silent skip.
pub fn peer(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var_os("IMAGELOCK_REQUIRE_PEERS").is_some_and(|v| v == "1") {
            panic!(
                "`{name}` is required (IMAGELOCK_REQUIRE_PEERS=1) but not on PATH; .ci/run installs it"
            );
        }
        eprintln!(
            "SKIPPED: `{name}` is not installed (set IMAGELOCK_REQUIRE_PEERS=1 to make this fatal)"
        );
    }
    found
}

/// Whether `unshare --net` works here (root, or user namespaces); like
/// [`peer`], fatal when missing under `IMAGELOCK_REQUIRE_PEERS=1`.
pub fn network_namespaces() -> bool {
    let works = Command::new("unshare")
        .args(["--net", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        if std::env::var_os("IMAGELOCK_REQUIRE_PEERS").is_some_and(|v| v == "1") {
            panic!(
                "`unshare --net` is required (IMAGELOCK_REQUIRE_PEERS=1) but does not work here (needs root or user namespaces)"
            );
        }
        eprintln!("SKIPPED: `unshare --net` does not work here (needs root or user namespaces)");
    }
    works
}

/// The result of running the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn failure(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A project directory with its own HOME, store and credentials.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("project")).expect("mkdir");
        let mut env = BTreeMap::new();
        env.insert("HOME".into(), home.display().to_string());
        env.insert(
            "XDG_DATA_HOME".into(),
            home.join(".local/share").display().to_string(),
        );
        env.insert(
            "XDG_CONFIG_HOME".into(),
            home.join(".config").display().to_string(),
        );
        env.insert(
            "DOCKER_CONFIG".into(),
            home.join(".docker").display().to_string(),
        );
        env.insert("IMAGELOCK_NO_PROGRESS".into(), "1".into());
        // Retries happen, but without waiting: tests stay fast.
        env.insert("IMAGELOCK_HTTP_RETRY_DELAY_MS".into(), "0".into());
        Project { dir, env }
    }

    /// The project directory (cwd of every run).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("home/project")
    }

    /// The default store for runs without `--store`.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("home/.local/share/imagelock/store")
    }

    pub fn write(&self, name: &str, text: &str) {
        let path = self.root().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Appends `[registries."HOST"] insecure-http = true` to images.toml.
    pub fn allow_plain_http(&self, host: &str) {
        let manifest = self.read("images.toml");
        self.write(
            "images.toml",
            &format!("{manifest}\n[registries.\"{host}\"]\ninsecure-http = true\n"),
        );
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.root().join(name))
            .unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_via(&[], args)
    }

    /// The binary run through `wrapper` (a program and its arguments, which
    /// then runs the binary with `args`), or directly when it is empty.
    fn command_via(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let binary = env!("CARGO_BIN_EXE_imagelock");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.args(args).current_dir(self.root()).env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run imagelock");
        Run::from(out)
    }

    /// Runs the binary in a network namespace of its own (`unshare --net`):
    /// no route anywhere, not even to loopback servers. Check
    /// [`network_namespaces`] first.
    pub fn run_without_network(&self, args: &[&str]) -> Run {
        let out = self
            .command_via(&["unshare", "--net", "--"], args)
            .output()
            .expect("run imagelock under unshare");
        Run::from(out)
    }

    /// Starts the binary without waiting (output captured).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imagelock")
    }

    /// Every blob file under `store/blobs`, as (name, sha256 of its bytes).
    pub fn store_blobs(&self, store: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for alg in ["sha256", "sha512"] {
            let Ok(entries) = std::fs::read_dir(store.join("blobs").join(alg)) else {
                continue;
            };
            for e in entries {
                let e = e.expect("entry");
                let bytes = std::fs::read(e.path()).expect("read blob");
                let actual = match alg {
                    "sha256" => hex::encode(sha2::Sha256::digest(&bytes)),
                    _ => hex::encode(sha2::Sha512::digest(&bytes)),
                };
                out.push((e.file_name().to_string_lossy().into_owned(), actual));
            }
        }
        out.sort();
        out
    }

    /// Asserts every blob hashes to its name; returns how many there are.
    #[track_caller]
    pub fn assert_store_valid(&self, store: &Path) -> usize {
        let blobs = self.store_blobs(store);
        for (name, actual) in &blobs {
            assert_eq!(name, actual, "blob {name} does not hash to its name");
        }
        blobs.len()
    }
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub _data: tempfile::TempDir,
}

/// Extra config for a registry.
#[derive(Default)]
pub struct RegistryOptions {
    /// htpasswd users (user, password) for Basic auth.
    pub users: Vec<(&'static str, &'static str)>,
    /// (cert.pem, key.pem) for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Token authentication instead of Basic.
    pub token: Option<TokenAuth>,
}

/// distribution's token authentication: clients get tokens from `realm`;
/// the registry accepts those signed by the key of a certificate in
/// `rootcertbundle` and naming `issuer` and `service`.
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

impl Registry {
    pub fn start(options: RegistryOptions) -> Registry {
        for _attempt in 0..5 {
            let data = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: imagelock-test-secret\n",
                data.path().join("storage").display()
            );
            if let Some((cert, key)) = &options.tls {
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ));
            }
            if !options.users.is_empty() {
                let htpasswd = data.path().join("htpasswd");
                for (i, (user, pass)) in options.users.iter().enumerate() {
                    let mut cmd = Command::new("htpasswd");
                    cmd.arg("-bB");
                    if i == 0 {
                        cmd.arg("-c");
                    }
                    let status = cmd
                        .arg(&htpasswd)
                        .arg(user)
                        .arg(pass)
                        .stderr(Stdio::null())
                        .status()
                        .expect("htpasswd");
                    assert!(status.success(), "htpasswd failed");
                }
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            if let Some(token) = &options.token {
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    token.realm,
                    token.service,
                    token.issuer,
                    token.rootcertbundle.display()
                ));
            }
            let config_path = data.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write config");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn docker-registry");
            let mut registry = Registry {
                child,
                port,
                _data: data,
            };
            if registry.wait_ready() {
                return registry;
            }
        }
        panic!("docker-registry did not start");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the registry (for offline checks).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pushes `oci:LAYOUT:REF` to `docker://DEST` with skopeo (plain HTTP, optional credentials).
pub fn skopeo_push(layout: &Path, reference: &str, dest: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .args(extra)
        .arg(format!("oci:{}:{reference}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds OCI image layouts for tests.
pub struct LayoutBuilder {
    pub dir: PathBuf,
    index: Vec<serde_json::Value>,
}

/// A descriptor as JSON.
pub type Desc = serde_json::Value;

impl LayoutBuilder {
    pub fn new(dir: &Path) -> LayoutBuilder {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
        LayoutBuilder {
            dir: dir.to_owned(),
            index: Vec::new(),
        }
    }

    pub fn blob(&self, bytes: &[u8], media_type: &str) -> Desc {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).expect("write blob");
        serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    }

    /// A gzip layer holding `files`.
    pub fn layer(&self, files: &[(&str, &[u8])]) -> Desc {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, name, *content).expect("tar");
        }
        let raw = tar.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("gzip");
        self.blob(
            &gz.finish().expect("gzip"),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    }

    /// An image manifest for (os, arch) with `layers`; returns its descriptor.
    pub fn image(&self, os: &str, arch: &str, layers: &[Desc]) -> Desc {
        let config = serde_json::json!({
            "architecture": arch, "os": os,
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created_by": "imagelock tests"}],
        });
        let config = self.blob(
            config.to_string().as_bytes(),
            "application/vnd.oci.image.config.v1+json",
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        });
        let mut desc = self.blob(
            manifest.to_string().as_bytes(),
            "application/vnd.oci.image.manifest.v1+json",
        );
        desc["platform"] = serde_json::json!({"os": os, "architecture": arch});
        desc
    }

    /// An index over `manifests`; returns its descriptor.
    pub fn index(&self, manifests: &[Desc]) -> Desc {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        self.blob(
            index.to_string().as_bytes(),
            "application/vnd.oci.image.index.v1+json",
        )
    }

    /// Names `desc` in the layout's index.json.
    pub fn tag(&mut self, name: &str, desc: &Desc) -> &mut LayoutBuilder {
        let mut d = desc.clone();
        if let Some(obj) = d.as_object_mut() {
            obj.remove("platform");
        }
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
        self.index.push(d);
        let top = serde_json::json!({"schemaVersion": 2, "manifests": self.index});
        std::fs::write(self.dir.join("index.json"), top.to_string()).expect("write index.json");
        self
    }
}

/// Accepts connections on a free loopback port, each handled by `handle` on
/// a thread of its own, until the returned flag is set; returns (port, flag).
fn accept_loop(
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let handle = std::sync::Arc::new(handle);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let handle = handle.clone();
                    std::thread::spawn(move || handle(stream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (port, stop)
}

/// A minimal HTTP/1.1 server for hostile cases: each path maps to a canned
/// response; anything else is 404. One thread per connection, stops on drop.
pub struct HostileServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    routes: Routes,
    hits: Hits,
    ranges: Ranges,
    heads: Heads,
}

/// Every request head received (request line and headers), in order.
type Heads = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

type Hits = std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>;

/// Per path: the responses still to give, in order; the last one repeats.
type Routes = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<Canned>>>>;

/// Per path: the `Range` header of each request (None when absent).
type Ranges = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<Option<String>>>>>;

/// A canned response.
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close (Content-Length stays full).
    pub truncate_at: Option<usize>,
    /// (required Authorization header, WWW-Authenticate challenge sent with the 401 otherwise).
    pub auth: Option<(String, String)>,
    /// Answer `Range: bytes=N-` with 206 and the rest of the body.
    pub ranges: bool,
    /// Wait this long after the headers before sending the body.
    pub stall: Option<Duration>,
    /// Send the body one byte at a time, this long apart.
    pub trickle: Option<Duration>,
}

impl Canned {
    pub fn ok(body: &[u8], headers: &[(&str, &str)]) -> Canned {
        Canned {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            truncate_at: None,
            auth: None,
            ranges: false,
            stall: None,
            trickle: None,
        }
    }

    /// A bare status with an empty body and `headers`.
    pub fn status(status: u16, headers: &[(&str, &str)]) -> Canned {
        Canned {
            status,
            ..Canned::ok(b"", headers)
        }
    }

    /// The same response, honouring `Range: bytes=N-`.
    pub fn with_ranges(mut self) -> Canned {
        self.ranges = true;
        self
    }

    /// The same response, closing the connection after `n` body bytes.
    pub fn truncated(mut self, n: usize) -> Canned {
        self.truncate_at = Some(n);
        self
    }

    /// The same response, its body sent one byte every `interval`.
    pub fn trickled(mut self, interval: Duration) -> Canned {
        self.trickle = Some(interval);
        self
    }

    /// The same response, only for requests carrying `authorization`.
    pub fn requiring(mut self, authorization: &str, challenge: &str) -> Canned {
        self.auth = Some((authorization.to_owned(), challenge.to_owned()));
        self
    }
}

impl HostileServer {
    pub fn start(routes: BTreeMap<String, Canned>) -> HostileServer {
        let routes: Routes = std::sync::Arc::new(std::sync::Mutex::new(
            routes.into_iter().map(|(k, v)| (k, vec![v])).collect(),
        ));
        let shared = routes.clone();
        let hits: Hits = Default::default();
        let counted = hits.clone();
        let ranges: Ranges = Default::default();
        let seen = ranges.clone();
        let heads: Heads = Default::default();
        let recorded = heads.clone();
        let (port, stop) =
            accept_loop(move |stream| serve(stream, &shared, &counted, &seen, &recorded));
        HostileServer {
            port,
            stop,
            routes,
            hits,
            ranges,
            heads,
        }
    }

    /// Every request head received so far (request line and headers), in order.
    pub fn requests(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }

    /// The `Range` header of each request for `path`, in order.
    pub fn ranges(&self, path: &str) -> Vec<Option<String>> {
        self.ranges
            .lock()
            .expect("ranges")
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Responds to `path` with `responses` in order, the last one from then on.
    pub fn set_sequence(&self, path: &str, responses: Vec<Canned>) {
        assert!(!responses.is_empty(), "a sequence needs a response");
        self.routes
            .lock()
            .expect("routes")
            .insert(path.to_owned(), responses);
    }

    /// How many requests `path` has had.
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Replaces (or adds) the response for `path`.
    pub fn set(&self, path: &str, canned: Canned) {
        self.set_sequence(path, vec![canned]);
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The value of header `name` in a request head (case-insensitive name).
fn request_header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    })
}

fn serve(mut stream: TcpStream, routes: &Routes, hits: &Hits, ranges: &Ranges, heads: &Heads) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&request);
        let path = text
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap_or("/")
            .to_owned();
        *hits.lock().expect("hits").entry(path.clone()).or_default() += 1;
        heads
            .lock()
            .expect("heads")
            .push(text.trim_end().to_owned());
        let authorization = request_header(&text, "authorization");
        let range = request_header(&text, "range");
        ranges
            .lock()
            .expect("ranges")
            .entry(path.clone())
            .or_default()
            .push(range.clone());
        let mut canned = {
            let mut routes = routes.lock().expect("routes");
            match routes.get_mut(&path) {
                Some(queue) if queue.len() > 1 => queue.remove(0),
                Some(queue) => queue[0].clone(),
                None => Canned {
                    status: 404,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: br#"{"errors":[{"code":"NOT_FOUND","message":"no such route"}]}"#
                        .to_vec(),
                    truncate_at: None,
                    auth: None,
                    ranges: false,
                    stall: None,
                    trickle: None,
                },
            }
        };
        if let Some((required, challenge)) = &canned.auth
            && authorization.as_deref() != Some(required.as_str())
        {
            canned = Canned {
                status: 401,
                headers: vec![("WWW-Authenticate".into(), challenge.clone())],
                body:
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_vec(),
                truncate_at: None,
                auth: None,
                ranges: false,
                stall: None,
                trickle: None,
            };
        }
        let from = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| canned.ranges && canned.status == 200 && *n < canned.body.len());
        let total = canned.body.len();
        let (status, content) = match from {
            Some(n) => (206, &canned.body[n..]),
            None => (canned.status, &canned.body[..]),
        };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n",
            content.len()
        );
        if let Some(n) = from {
            head.push_str(&format!(
                "Content-Range: bytes {n}-{}/{total}\r\n",
                total - 1
            ));
        }
        for (k, v) in &canned.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let body = &content[..canned
            .truncate_at
            .unwrap_or(content.len())
            .min(content.len())];
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        if let Some(stall) = canned.stall {
            std::thread::sleep(stall);
        }
        if let Some(interval) = canned.trickle {
            for byte in body {
                if stream.write_all(std::slice::from_ref(byte)).is_err() {
                    return;
                }
                std::thread::sleep(interval);
            }
        } else if stream.write_all(body).is_err() {
            return;
        }
        if canned.truncate_at.is_some() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// A TCP proxy in front of a real server that breaks chosen requests off
/// mid-body: each fault cuts the first request whose request line starts with
/// its method and contains its path fragment, and whose body is longer than
/// its cut, after that many body bytes, closing both connections. Everything
/// else passes through unchanged.
pub struct FaultProxy {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    faults: Faults,
}

/// A fault to inject once: (method, path fragment, body bytes to let through).
pub struct Fault {
    pub method: &'static str,
    pub path_contains: &'static str,
    pub cut_after: u64,
}

/// Faults with whether each has fired.
type Faults = std::sync::Arc<std::sync::Mutex<Vec<(Fault, bool)>>>;

impl FaultProxy {
    pub fn start(target: &str, faults: Vec<Fault>) -> FaultProxy {
        let faults: Faults = std::sync::Arc::new(std::sync::Mutex::new(
            faults.into_iter().map(|f| (f, false)).collect(),
        ));
        let shared = faults.clone();
        let target = target.to_owned();
        let (port, stop) = accept_loop(move |client| proxy(client, &target, &shared));
        FaultProxy { port, stop, faults }
    }

    /// How many faults have fired.
    pub fn fired(&self) -> usize {
        self.faults
            .lock()
            .expect("faults")
            .iter()
            .filter(|(_, fired)| *fired)
            .count()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Relays one client connection request by request (heads parsed for the
/// method, path and Content-Length), cutting it off where a fault says.
fn proxy(client: TcpStream, target: &str, faults: &Faults) {
    use std::io::BufRead;
    let _ = client.set_nonblocking(false);
    let Ok(mut server) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(mut from_server), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    let mut reader = std::io::BufReader::new(client.try_clone().expect("clone"));
    loop {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            match reader.read_until(b'\n', &mut head) {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown(std::net::Shutdown::Both);
                    return;
                }
                Ok(_) => {}
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let line = text.lines().next().unwrap_or_default().to_owned();
        let length: u64 = request_header(&text, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cut = {
            let mut faults = faults.lock().expect("faults");
            faults
                .iter_mut()
                .find(|(f, fired)| {
                    !*fired
                        && line.starts_with(&format!("{} ", f.method))
                        && line.contains(f.path_contains)
                        && length > f.cut_after
                })
                .map(|(f, fired)| {
                    *fired = true;
                    f.cut_after
                })
        };
        if server.write_all(&head).is_err() {
            return;
        }
        let pass = cut.unwrap_or(length);
        let copied = std::io::copy(&mut (&mut reader).take(pass), &mut server).unwrap_or(0);
        if cut.is_some() || copied < pass {
            let _ = server.shutdown(std::net::Shutdown::Both);
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// A project holding a copy of the bundled example: images.toml, images.lock
/// and examples/ (the layout, the signed ACI and its TEST-ONLY key).
pub fn example() -> Project {
    let project = Project::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["images.toml", "images.lock"] {
        std::fs::copy(repo.join(file), project.root().join(file)).expect("copy");
    }
    copy_dir(&repo.join("examples"), &project.root().join("examples"));
    project
}

/// Copies a directory tree of plain files.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The text a snapshot of `run` holds: the exit code, stdout and stderr.
pub fn run_text(run: &Run) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

/// Asserts the insta snapshot `name` (in tests/cli/snapshots, without a module prefix) of
/// `text`, with what varies between runs replaced by each (regex, replacement) filter.
#[track_caller]
pub fn assert_snapshot_filtered(name: &str, text: &str, filters: &[(String, &str)]) {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in filters {
        settings.add_filter(pattern, *replacement);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// `text` with every regex metacharacter escaped, to filter a literal path.
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// `git ARGS` in `project`'s directory, with a fixed identity and no user or
/// system configuration: stdout and stderr together.
pub fn git(project: &Project, args: &[&str]) -> String {
    let out = git_command(project, args).output().expect("run git");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// [`git`], which must succeed.
#[track_caller]
pub fn git_ok(project: &Project, args: &[&str]) {
    let out = git_command(project, args).output().expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git_command(project: &Project, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@imagelock.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(project.root())
        .env("HOME", project.dir.path().join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1");
    command
}
