//! Real peers for the appc tests: test-time certificates (`openssl`), an
//! `nginx` serving discovery pages, ACIs, signatures and keys over HTTPS and
//! plain HTTP on loopback, and `gpg` making real keys and signatures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

fn run_tool(program: &str, dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A throwaway CA and a server certificate for some DNS names and 127.0.0.1.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// Generates the CA and a server certificate in `dir` (created).
    pub fn generate(dir: &Path, dns_names: &[&str]) -> Certs {
        std::fs::create_dir_all(dir).expect("mkdir certs");
        let openssl = |args: &[&str]| run_tool("openssl", dir, args);
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=imagelock test CA (TEST ONLY)",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=imagelock test server",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        let mut san = String::from("subjectAltName=IP:127.0.0.1");
        for name in dns_names {
            san.push_str(&format!(",DNS:{name}"));
        }
        std::fs::write(dir.join("ext.cnf"), format!("{san}\n")).expect("write ext.cnf");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// An nginx serving `root` over HTTPS (`tls_port`) and plain HTTP
/// (`http_port`), as an ordinary single process; killed on drop.
///
/// A request for `/a/b` serves the file `root/a/b`, or `root/a/b/index.html`
/// when `a/b` is a directory, so a discovery page for every level of a name
/// is a file `index.html` in that level's directory.
pub struct Nginx {
    child: Child,
    pub tls_port: u16,
    pub http_port: u16,
    pub root: PathBuf,
    pub dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with extra `location` blocks (e.g. redirects) in both servers.
    pub fn start(dir: &Path, certs: &Certs, extra_locations: &str) -> Nginx {
        let root = dir.join("www");
        std::fs::create_dir_all(&root).expect("mkdir www");
        std::fs::create_dir_all(dir.join("tmp")).expect("mkdir tmp");
        for _attempt in 0..5 {
            let (tls_port, http_port) = (free_port(), free_port());
            let d = dir.display();
            let config = format!(
                "daemon off;\nmaster_process off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log {d}/access.log;\n  default_type application/octet-stream;\n\
                 types {{ text/html html; }}\n\
                 client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
                 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
                 server {{\n    listen 127.0.0.1:{tls_port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 root {root};\n    location / {{ try_files $uri $uri/index.html =404; }}\n{extra_locations}\n  }}\n\
                 server {{\n    listen 127.0.0.1:{http_port};\n    root {root};\n\
                 location / {{ try_files $uri $uri/index.html =404; }}\n{extra_locations}\n  }}\n}}\n",
                cert = certs.cert.display(),
                key = certs.key.display(),
                root = root.display(),
            );
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config).expect("write nginx.conf");
            let child = Command::new("nginx")
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let mut nginx = Nginx {
                child,
                tls_port,
                http_port,
                root: root.clone(),
                dir: dir.to_owned(),
            };
            if nginx.wait_ready() {
                return nginx;
            }
            let _ = nginx.child.kill();
            let _ = nginx.child.wait();
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        panic!("nginx did not start:\n{log}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.tls_port) && up(self.http_port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Writes `bytes` at URL path `path` (e.g. `example.com/app/index.html`).
    pub fn put(&self, path: &str, bytes: &[u8]) {
        let file = self.root.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, bytes).expect("write");
    }

    /// How many requests the access log shows for paths starting with `path`.
    pub fn hits(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&format!("\"GET {path}")))
            .count()
    }

    /// `--resolve` values sending `https_hosts` to the TLS port and `http_hosts` to the plain one.
    pub fn resolve(&self, https_hosts: &[&str], http_hosts: &[&str]) -> String {
        let tls = https_hosts
            .iter()
            .map(|h| format!("{h}=127.0.0.1:{}", self.tls_port));
        let plain = http_hosts
            .iter()
            .map(|h| format!("{h}=127.0.0.1:{}", self.http_port));
        tls.chain(plain).collect::<Vec<_>>().join(",")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway GnuPG home making real keys and signatures.
pub struct Gpg {
    pub home: PathBuf,
}

impl Gpg {
    pub fn new(dir: &Path) -> Gpg {
        std::fs::create_dir_all(dir).expect("mkdir gnupg");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        Gpg {
            home: dir.to_owned(),
        }
    }

    fn gpg(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args([
                "--batch",
                "--quiet",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run gpg");
        assert!(
            out.status.success(),
            "gpg {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Generates a signing key (`ed25519`, `rsa3072`, ...) for `email`; returns its fingerprint.
    /// `faked_time` (e.g. `20200101T000000`) and `expire` (e.g. `1d`) make expired keys.
    pub fn generate(
        &self,
        email: &str,
        algo: &str,
        expire: &str,
        faked_time: Option<&str>,
    ) -> String {
        let uid = format!("imagelock test key (TEST ONLY) <{email}>");
        let mut args: Vec<&str> = Vec::new();
        if let Some(t) = faked_time {
            args.extend(["--faked-system-time", t]);
        }
        args.extend(["--quick-generate-key", &uid, algo, "sign", expire]);
        self.gpg(&args);
        self.fingerprint(email)
    }

    /// The primary key fingerprint of `email`'s key.
    pub fn fingerprint(&self, email: &str) -> String {
        let listing =
            String::from_utf8(self.gpg(&["--with-colons", "--list-keys", email])).expect("utf8");
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|rest| rest.trim_matches(':').to_owned())
            .expect("a fingerprint line")
    }

    /// The armored public key of `email`.
    pub fn export(&self, email: &str) -> Vec<u8> {
        self.gpg(&["--armor", "--export", email])
    }

    /// Writes a detached armored signature of `file` by `email` to `out`.
    pub fn sign(&self, email: &str, file: &Path, out: &Path, faked_time: Option<&str>) {
        let mut args: Vec<&str> = Vec::new();
        if let Some(t) = faked_time {
            args.extend(["--faked-system-time", t]);
        }
        let (file, out) = (
            file.to_str().expect("utf8 path"),
            out.to_str().expect("utf8 path"),
        );
        args.extend([
            "--yes",
            "--local-user",
            email,
            "--armor",
            "--output",
            out,
            "--detach-sign",
            file,
        ]);
        self.gpg(&args);
    }
}

/// A registry token (a JWT, RS256) with `claims`, signed by the key of the
/// test CA of `certs` and carrying that certificate (`x5c`), as distribution's
/// token authentication verifies against `rootcertbundle`.
pub fn signed_token(certs: &Certs, claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let dir = certs.ca.parent().expect("the CA lives in a directory");
    let der = run_tool(
        "openssl",
        dir,
        &["x509", "-in", "ca.pem", "-outform", "DER"],
    );
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let input_file = dir.join("token-input");
    std::fs::write(&input_file, &signing_input).expect("write token input");
    let signature = run_tool(
        "openssl",
        dir,
        &["dgst", "-sha256", "-sign", "ca.key", "token-input"],
    );
    format!("{signing_input}.{}", b64(&signature))
}
