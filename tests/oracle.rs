//! The systemd oracle: a generated tree of units, drop-ins, aliases and links is loaded by a
//! real systemd 247, 252 and 257 (Debian bullseye, bookworm and trixie booted under
//! systemd-nspawn), and `dropfix show --root <container root>` must read every unit the way
//! that systemd did: load state, fragment, names, drop-ins in order, and MountFlags.
//!
//! The tree comes from a seed, printed with the results; `DROPFIX_ORACLE_SEED=N` replays one.
//! Any disagreement fails the test and is listed (unit, version, what systemd said, what dropfix
//! said); `DROPFIX_ORACLE_REPORT=1` lists them without failing, and `DROPFIX_ORACLE_DUMP=DIR`
//! writes systemd's own answers to DIR/systemd-<version>.tsv. Needs root, never skips.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;
use support::{Container, Setup};

const ETC: &str = "/etc/systemd/system";
const RUN: &str = "/run/systemd/system";
const USR: &str = "/usr/lib/systemd/system";
/// Outside every unit directory: targets of linked units and symlinked `.d` directories.
const OUT: &str = "/usr/share/dropfix-oracle";

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

#[test]
fn systemd_247_and_dropfix_read_the_generated_units_alike() {
    oracle("bullseye", 247);
}

#[test]
fn systemd_252_and_dropfix_read_the_generated_units_alike() {
    oracle("bookworm", 252);
}

#[test]
fn systemd_257_and_dropfix_read_the_generated_units_alike() {
    oracle("trixie", 257);
}

// ------------------------------------------------------------------------------- the tree

/// splitmix64: small, and the same sequence everywhere for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The seed of this run: `DROPFIX_ORACLE_SEED`, else the clock (one per process, so the three
/// versions load the same tree).
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("DROPFIX_ORACLE_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("DROPFIX_ORACLE_SEED={s}: not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000_000)
            .unwrap_or(1),
    })
}

enum Node {
    File(Vec<u8>),
    Link(String),
}

/// Files and links to lay out (absolute paths in the container), and the unit names to ask
/// about, each with the shape of the case that made it.
#[derive(Default)]
struct Tree {
    nodes: Vec<(String, Node)>,
    probes: Vec<(String, String)>,
}

impl Tree {
    /// /usr and /etc are there from boot on.
    fn setup(&self, mut setup: Setup) -> Setup {
        for (path, node) in &self.nodes {
            if path.starts_with("/run/") {
                continue;
            }
            setup = match (node, path.starts_with("/usr/")) {
                (Node::File(b), true) => setup.usr_bytes(path, b, 0o644),
                (Node::File(b), false) => setup.etc_bytes(path, b),
                (Node::Link(t), _) => setup.symlink(path, t),
            };
        }
        setup
    }

    /// /run is the container's own tmpfs: laid out after boot, then systemd reloads.
    fn place_run(&self, c: &Container) {
        for (path, node) in &self.nodes {
            if !path.starts_with("/run/") {
                continue;
            }
            let host = c.path(path);
            if let Some(dir) = host.parent() {
                std::fs::create_dir_all(dir)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            }
            match node {
                Node::File(b) => std::fs::write(&host, b),
                Node::Link(t) => std::os::unix::fs::symlink(t, &host),
            }
            .unwrap_or_else(|e| panic!("laying out {path}: {e}"));
        }
    }
}

struct Gen {
    rng: Rng,
    tree: Tree,
    k: usize,
    shape: String,
}

/// A unit that loads and is never started.
fn unit(mf: Option<&str>) -> String {
    let mut s = String::from(
        "[Unit]\nDescription=dropfix oracle\n\n[Service]\nType=oneshot\nRemainAfterExit=no\nExecStart=/bin/true\n",
    );
    if let Some(v) = mf {
        s.push_str(&format!("MountFlags={v}\n"));
    }
    s
}

/// A drop-in setting MountFlags, or only something harmless.
fn dropin(mf: Option<&str>) -> String {
    match mf {
        Some(v) => format!("[Service]\nMountFlags={v}\n"),
        None => "[Service]\nEnvironment=DROPFIX_ORACLE=1\n".into(),
    }
}

impl Gen {
    fn new(seed: u64) -> Self {
        Gen {
            rng: Rng(seed),
            tree: Tree::default(),
            k: 0,
            shape: String::new(),
        }
    }
    /// Starts a case: its shape (for the report) and its name prefix (`o07`), which keeps one
    /// case's names, prefix drop-ins and aliases away from every other case's.
    fn case(&mut self, shape: &str) -> String {
        self.k += 1;
        self.shape = shape.to_string();
        format!("o{:02}", self.k)
    }
    fn put(&mut self, path: String, bytes: impl Into<Vec<u8>>) {
        self.tree.nodes.push((path, Node::File(bytes.into())));
    }
    fn link(&mut self, path: String, target: &str) {
        self.tree.nodes.push((path, Node::Link(target.to_string())));
    }
    fn probe(&mut self, name: &str) {
        self.tree
            .probes
            .push((name.to_string(), self.shape.clone()));
    }
    fn dir(&mut self) -> &'static str {
        self.rng.pick(&[ETC, RUN, USR])
    }
    /// A MountFlags value, or none.
    fn mf(&mut self) -> Option<&'static str> {
        self.rng.pick(&[
            Some("slave"),
            Some("shared"),
            Some("private"),
            Some(""),
            None,
        ])
    }
    fn set(&mut self) -> &'static str {
        self.rng.pick(&["slave", "shared", "private"])
    }
    /// A unit file with this text in a random directory, asked about.
    fn fragment(&mut self, name: &str, text: impl Into<Vec<u8>>) {
        let d = self.dir();
        self.put(format!("{d}/{name}"), text);
        self.probe(name);
    }
}

/// The whole tree for a seed: every shape of the issue, its details drawn from the seed.
fn generate(seed: u64) -> Tree {
    let mut g = Gen::new(seed);
    // Type-level drop-ins apply to every service, in /usr from boot and in /run after it.
    g.put(format!("{USR}/service.d/10-oracle-type.conf"), dropin(None));
    g.put(format!("{RUN}/service.d/20-oracle-type.conf"), dropin(None));
    syntax(&mut g);
    broken(&mut g);
    layers(&mut g);
    aliases(&mut g);
    links(&mut g);
    dropin_dirs(&mut g);
    templates(&mut g);
    prefixes(&mut g);
    // The rootfs's own units: Debian's paths (/lib), aliases and templates as shipped.
    g.case("the rootfs's own units");
    for n in [
        "dbus.service",
        "systemd-journald.service",
        "systemd-logind.service",
        "getty@tty1.service",
        "autovt@tty2.service",
        "nonexistent-oracle.service",
    ] {
        g.probe(n);
    }
    g.tree
}

fn syntax(g: &mut Gen) {
    let p = g.case("continuation: the value on the next line, leading space stripped");
    let v = g.set();
    let t = unit(None) + &format!("Description=part1 \\\n     part2\nMountFlags=\\\n{v}\n");
    g.fragment(&format!("{p}a.service"), t);

    let p =
        g.case("continuation splitting the value: 'sl ave' is invalid, the earlier value stays");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(Some(v)) + "MountFlags=sl\\\nave\n",
    );

    let p = g.case("comment lines inside a continuation are dropped");
    let v = g.set();
    let t = unit(None)
        + &format!("Environment=A=1 \\\n# a comment\n; another\n  B=2\nMountFlags=\\\n# c\n{v}\n");
    g.fragment(&format!("{p}a.service"), t);

    let p = g.case("a comment ending in a backslash does not continue");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(None) + &format!("# comment \\\nMountFlags={v}\n"),
    );

    let p = g.case("an empty line ends a continuation");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(None) + &format!("Environment=A=1 \\\n\nMountFlags={v}\n"),
    );

    let p = g.case("even backslashes do not continue; 'slave\\\\' is invalid");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(Some(v)) + "MountFlags=slave\\\\\nDescription=after\n",
    );

    let p = g.case("a continuation at the end of the file, without a newline");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(None) + &format!("MountFlags={v}\\"),
    );

    let p = g.case("CRLF line ends, in a fragment and a drop-in");
    let (v, w) = (g.set(), g.mf());
    g.fragment(
        &format!("{p}a.service"),
        unit(Some(v)).replace('\n', "\r\n"),
    );
    let d = g.dir();
    g.put(
        format!("{d}/{p}a.service.d/50-crlf.conf"),
        dropin(w).replace('\n', "\r\n") + "Description=x \\\r\n y\r\n",
    );

    let p = g.case("a UTF-8 byte-order mark, in a fragment and a drop-in");
    let (v, w) = (g.set(), g.mf());
    g.fragment(
        &format!("{p}a.service"),
        format!("\u{feff}{}", unit(Some(v))),
    );
    let d = g.dir();
    g.put(
        format!("{d}/{p}a.service.d/50-bom.conf"),
        format!("\u{feff}{}", dropin(w)),
    );

    let p = g.case("[ Service ] is another section: its MountFlags= is ignored");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(None) + &format!("[ Service ]\nMountFlags={v}\n"),
    );

    let p = g.case("ExecStart= only under [ Service ]: no ExecStart, a bad setting");
    g.fragment(
        &format!("{p}a.service"),
        "[Unit]\nDescription=x\n[ Service ]\nType=oneshot\nExecStart=/bin/true\n",
    );

    let p = g.case("unknown sections and keys, X- ones, a lowercase key");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(Some(v))
            + "FooBar=1\nX-Oracle=2\nmountflags=private\n[X-Oracle]\nMountFlags=slave\n[Oracle]\nMountFlags=shared\n",
    );

    let p = g.case("an assignment before any section");
    g.fragment(
        &format!("{p}a.service"),
        "MountFlags=slave\n".to_string() + &unit(None),
    );

    let p = g.case("a line without '=' is skipped (fatal only before 243)");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(Some(v)) + "MountFlags slave\n=private\nMountFlags\n",
    );
    let d = g.dir();
    g.put(
        format!("{d}/{p}a.service.d/50-noeq.conf"),
        "[Service]\nnot an assignment\nMountFlags=shared\n",
    );

    let p = g.case("an empty assignment resets, in the file and from a drop-in");
    let v = g.set();
    g.fragment(&format!("{p}a.service"), unit(Some(v)) + "MountFlags=\n");
    let v = g.set();
    g.fragment(&format!("{p}b.service"), unit(Some(v)));
    let d = g.dir();
    g.put(
        format!("{d}/{p}b.service.d/50-reset.conf"),
        dropin(Some("")),
    );
    if g.rng.chance(50) {
        let w = g.set();
        g.put(format!("{d}/{p}b.service.d/60-again.conf"), dropin(Some(w)));
    }

    let p = g.case("invalid values keep the earlier one: bogus, quoted, trailing comment");
    let v = g.set();
    g.fragment(
        &format!("{p}a.service"),
        unit(Some(v))
            + "MountFlags=bogus\nMountFlags=\"shared\"\nMountFlags=slave # c\nMountFlags=Slave\n",
    );

    let p = g.case("whitespace around key and value; last of repeated keys wins");
    let (v, w) = (g.set(), g.set());
    g.fragment(
        &format!("{p}a.service"),
        unit(Some(v)) + &format!("   MountFlags   =   {w}   \n\t MountFlags=\t{v} \n"),
    );
}

fn broken(g: &mut Gen) {
    let p = g.case("fragment: '[Service' without its bracket");
    g.fragment(
        &format!("{p}a.service"),
        unit(Some("slave")) + "[Service\nMountFlags=shared\n",
    );

    let p = g.case("drop-in: '[Service' without its bracket; lines before it apply");
    let (v, w) = (g.set(), g.set());
    g.fragment(&format!("{p}a.service"), unit(None));
    let d = g.dir();
    g.put(
        format!("{d}/{p}a.service.d/50-bracket.conf"),
        format!("[Service]\nMountFlags={v}\n[Service\nMountFlags={w}\n"),
    );
    let d = g.dir();
    g.put(format!("{d}/{p}a.service.d/40-before.conf"), dropin(None));

    let p = g.case("fragment: invalid UTF-8 (Environment=X=caf\\xe9)");
    let mut t = unit(Some("slave")).into_bytes();
    t.extend_from_slice(b"Environment=X=caf\xe9\n");
    g.fragment(&format!("{p}a.service"), t);

    let p = g.case("drop-in: invalid UTF-8; lines before it apply, later drop-ins too");
    let (v, w, x) = (g.set(), g.set(), g.mf());
    g.fragment(&format!("{p}a.service"), unit(None));
    let mut t = format!("[Service]\nMountFlags={v}\n").into_bytes();
    t.extend_from_slice(b"Environment=X=caf\xe9\n");
    t.extend_from_slice(format!("MountFlags={w}\n").as_bytes());
    let d = g.dir();
    g.put(format!("{d}/{p}a.service.d/50-utf8.conf"), t);
    if x.is_some() {
        let d = g.dir();
        g.put(format!("{d}/{p}a.service.d/60-after.conf"), dropin(x));
    }

    let p = g.case("fragment: a control character in a section header (fatal from 251)");
    g.fragment(
        &format!("{p}a.service"),
        unit(Some("private")) + "[X-Oracle\x01]\nDescription=x\n",
    );

    let p = g.case("drop-in: a control character in a section header");
    let (v, w) = (g.set(), g.set());
    g.fragment(&format!("{p}a.service"), unit(None));
    let d = g.dir();
    g.put(
        format!("{d}/{p}a.service.d/50-ctrl.conf"),
        format!("[Service]\nMountFlags={v}\n[Serv\x07ice]\nMountFlags={w}\n"),
    );

    let long = "a".repeat((1 << 20) + 64);
    let p = g.case("fragment: a line over 1 MiB");
    g.fragment(
        &format!("{p}a.service"),
        unit(Some("slave")) + &format!("Description={long}\n"),
    );

    let p = g.case("drop-in: a line over 1 MiB; lines before it apply");
    let (v, w) = (g.set(), g.set());
    g.fragment(&format!("{p}a.service"), unit(None));
    let d = g.dir();
    g.put(
        format!("{d}/{p}a.service.d/50-long.conf"),
        format!("[Service]\nMountFlags={v}\nEnvironment=X={long}\nMountFlags={w}\n"),
    );
}

fn layers(g: &mut Gen) {
    for _ in 0..4 {
        let p = g.case("MountFlags set and reset by drop-ins across /etc, /run and /usr");
        let v = g.mf();
        g.fragment(&format!("{p}a.service"), unit(v));
        let n = 2 + g.rng.below(4);
        for _ in 0..n {
            let d = g.dir();
            let name = g.rng.pick(&["10-a", "50-b", "50-b", "90-c", "zz"]);
            let w = g.mf();
            let path = format!("{d}/{p}a.service.d/{name}.conf");
            if !g.tree.nodes.iter().any(|(x, _)| *x == path) {
                g.put(path, dropin(w));
            }
        }
    }

    let p = g.case("same-named drop-ins: /etc hides /run hides /usr");
    g.fragment(&format!("{p}a.service"), unit(Some("slave")));
    let (a, b, c) = (g.set(), g.set(), g.set());
    g.put(format!("{USR}/{p}a.service.d/50-x.conf"), dropin(Some(a)));
    g.put(format!("{RUN}/{p}a.service.d/50-x.conf"), dropin(Some(b)));
    if g.rng.chance(50) {
        g.put(format!("{ETC}/{p}a.service.d/50-x.conf"), dropin(Some(c)));
    }

    let p = g.case("drop-ins masked by an empty file and by /dev/null");
    g.fragment(&format!("{p}a.service"), unit(None));
    g.put(
        format!("{USR}/{p}a.service.d/50-x.conf"),
        dropin(Some("slave")),
    );
    g.put(
        format!("{USR}/{p}a.service.d/60-y.conf"),
        dropin(Some("private")),
    );
    let (d1, d2) = (g.rng.pick(&[ETC, RUN]), g.rng.pick(&[ETC, RUN]));
    g.put(format!("{d1}/{p}a.service.d/50-x.conf"), "");
    g.link(format!("{d2}/{p}a.service.d/60-y.conf"), "/dev/null");

    let p = g.case("a dangling drop-in link, alone and over a same-named drop-in");
    g.fragment(&format!("{p}a.service"), unit(Some("shared")));
    let d = g.rng.pick(&[ETC, RUN]);
    g.link(
        format!("{d}/{p}a.service.d/50-gone.conf"),
        &format!("{OUT}/missing.conf"),
    );
    g.fragment(&format!("{p}b.service"), unit(None));
    g.put(
        format!("{USR}/{p}b.service.d/50-gone.conf"),
        dropin(Some("slave")),
    );
    g.link(format!("{d}/{p}b.service.d/50-gone.conf"), "missing.conf");

    let p = g.case("drop-ins systemd never reads: hidden, no .conf suffix");
    g.fragment(&format!("{p}a.service"), unit(None));
    let d = g.dir();
    g.put(
        format!("{d}/{p}a.service.d/.hidden.conf"),
        dropin(Some("slave")),
    );
    g.put(
        format!("{d}/{p}a.service.d/50-x.conf~"),
        dropin(Some("slave")),
    );
    g.put(format!("{d}/{p}a.service.d/README"), dropin(Some("slave")));

    let p = g.case("a full copy in /etc over /usr; a /usr drop-in still applies");
    let v = g.set();
    g.put(format!("{USR}/{p}a.service"), unit(Some("slave")));
    g.put(format!("{ETC}/{p}a.service"), unit(None));
    g.put(
        format!("{USR}/{p}a.service.d/50-vendor.conf"),
        dropin(Some(v)),
    );
    g.probe(&format!("{p}a.service"));

    let p = g.case("masked units: /dev/null in /etc over /usr, an empty file in /run");
    g.put(format!("{USR}/{p}a.service"), unit(Some("slave")));
    g.link(format!("{ETC}/{p}a.service"), "/dev/null");
    g.probe(&format!("{p}a.service"));
    g.put(format!("{RUN}/{p}b.service"), "");
    g.put(format!("{USR}/{p}b.service"), unit(Some("slave")));
    g.probe(&format!("{p}b.service"));

    let p = g.case("not found: nothing at all, and drop-ins without a fragment");
    g.probe(&format!("{p}a.service"));
    let d = g.dir();
    g.put(
        format!("{d}/{p}b.service.d/50-x.conf"),
        dropin(Some("slave")),
    );
    g.probe(&format!("{p}b.service"));

    let p = g.case("a unit's own drop-in hides the type-level one of the same name");
    g.fragment(&format!("{p}a.service"), unit(None));
    let d = g.rng.pick(&[ETC, RUN, USR]);
    g.put(
        format!("{d}/{p}a.service.d/10-oracle-type.conf"),
        dropin(Some("slave")),
    );
}

fn aliases(g: &mut Gen) {
    let p = g.case("alias chain al2 -> al1 -> x, with a drop-in for al1");
    let v = g.mf();
    g.put(format!("{USR}/{p}x.service"), unit(v));
    g.link(
        format!("{ETC}/{p}al1.service"),
        &format!("{USR}/{p}x.service"),
    );
    g.link(format!("{ETC}/{p}al2.service"), &format!("{p}al1.service"));
    let w = g.mf();
    let d = g.dir();
    g.put(format!("{d}/{p}al1.service.d/60-alias.conf"), dropin(w));
    for n in ["x", "al1", "al2"] {
        g.probe(&format!("{p}{n}.service"));
    }

    let p = g.case("alias in the same directory (relative link), its drop-in in another");
    let d = g.dir();
    let v = g.mf();
    g.put(format!("{d}/{p}x.service"), unit(v));
    g.link(format!("{d}/{p}al.service"), &format!("{p}x.service"));
    let (e, w) = (g.dir(), g.mf());
    g.put(format!("{e}/{p}al.service.d/70-alias.conf"), dropin(w));
    g.probe(&format!("{p}x.service"));
    g.probe(&format!("{p}al.service"));

    let p = g.case("alias hidden higher up by /dev/null");
    g.put(format!("{USR}/{p}x.service"), unit(Some("slave")));
    g.link(format!("{USR}/{p}al.service"), &format!("{p}x.service"));
    let d = g.rng.pick(&[ETC, RUN]);
    g.link(format!("{d}/{p}al.service"), "/dev/null");
    g.probe(&format!("{p}x.service"));
    g.probe(&format!("{p}al.service"));

    let p = g.case("alias hidden higher up by another unit of that name");
    g.put(format!("{USR}/{p}x.service"), unit(Some("slave")));
    g.link(format!("{USR}/{p}al.service"), &format!("{p}x.service"));
    let d = g.rng.pick(&[ETC, RUN]);
    g.put(format!("{d}/{p}al.service"), unit(Some("shared")));
    g.probe(&format!("{p}x.service"));
    g.probe(&format!("{p}al.service"));

    let p = g.case("instance alias pb@x.service -> p@.service");
    let v = g.mf();
    g.put(format!("{USR}/{p}p@.service"), unit(v));
    let d = g.rng.pick(&[ETC, RUN]);
    g.link(
        format!("{d}/{p}pb@x.service"),
        &format!("{USR}/{p}p@.service"),
    );
    g.put(
        format!("{ETC}/{p}pb@x.service.d/50-pb.conf"),
        dropin(Some("private")),
    );
    g.probe(&format!("{p}pb@x.service"));
    g.probe(&format!("{p}p@x.service"));

    let p = g.case("template alias pa@.service -> p@.service");
    let v = g.mf();
    g.put(format!("{USR}/{p}p@.service"), unit(v));
    g.link(format!("{USR}/{p}pa@.service"), &format!("{p}p@.service"));
    let w = g.mf();
    g.put(format!("{ETC}/{p}pa@.service.d/50-pa.conf"), dropin(w));
    g.probe(&format!("{p}pa@y.service"));
    g.probe(&format!("{p}p@y.service"));
}

fn links(g: &mut Gen) {
    let p = g.case("linked unit: a link to a file outside the search path");
    g.put(format!("{OUT}/{p}a.service"), unit(Some("slave")));
    // next to the target, so never read: drop-ins are looked up by name in the search path
    g.put(
        format!("{OUT}/{p}a.service.d/50-beside.conf"),
        dropin(Some("shared")),
    );
    let d = g.rng.pick(&[ETC, RUN]);
    g.link(format!("{d}/{p}a.service"), &format!("{OUT}/{p}a.service"));
    let (e, w) = (g.dir(), g.mf());
    g.put(format!("{e}/{p}a.service.d/60-link.conf"), dropin(w));
    g.probe(&format!("{p}a.service"));

    let p = g.case("linked unit: a relative link out of /run");
    g.put(format!("{OUT}/{p}a.service"), unit(Some("private")));
    g.link(
        format!("{RUN}/{p}a.service"),
        &format!("../../../usr/share/dropfix-oracle/{p}a.service"),
    );
    g.probe(&format!("{p}a.service"));

    let p = g.case("same-name link into a lower search directory");
    let v = g.mf();
    g.put(format!("{USR}/{p}a.service"), unit(v));
    g.link(
        format!("{ETC}/{p}a.service"),
        &format!("{USR}/{p}a.service"),
    );
    let w = g.mf();
    g.put(format!("{RUN}/{p}a.service.d/50-x.conf"), dropin(w));
    g.probe(&format!("{p}a.service"));

    let p = g.case("link into a subdirectory of a search directory");
    g.put(format!("{USR}/sub/{p}a.service"), unit(Some("slave")));
    let d = g.rng.pick(&[ETC, RUN]);
    g.link(
        format!("{d}/{p}a.service"),
        &format!("{USR}/sub/{p}a.service"),
    );
    g.probe(&format!("{p}a.service"));
}

fn dropin_dirs(g: &mut Gen) {
    let p = g.case("symlinked .d directory, absolute link text");
    g.fragment(&format!("{p}a.service"), unit(Some("slave")));
    let v = g.set();
    g.put(format!("{OUT}/{p}-abs/50-x.conf"), dropin(Some(v)));
    let d = g.rng.pick(&[ETC, RUN]);
    g.link(format!("{d}/{p}a.service.d"), &format!("{OUT}/{p}-abs"));

    let p = g.case("symlinked .d directory, relative link text out of the search path");
    g.fragment(&format!("{p}a.service"), unit(Some("slave")));
    let v = g.set();
    g.put(format!("{OUT}/{p}-rel/50-x.conf"), dropin(Some(v)));
    let d = g.rng.pick(&[ETC, RUN]);
    g.link(
        format!("{d}/{p}a.service.d"),
        &format!("../../../usr/share/dropfix-oracle/{p}-rel"),
    );

    let p = g.case("symlinked .d directory, relative link within its directory");
    g.fragment(&format!("{p}a.service"), unit(None));
    let (d, v) = (g.dir(), g.set());
    g.put(format!("{d}/{p}-real.d/50-x.conf"), dropin(Some(v)));
    g.link(format!("{d}/{p}a.service.d"), &format!("{p}-real.d"));

    let p = g.case("one unit's .d directory linked to another's");
    g.fragment(&format!("{p}a.service"), unit(None));
    g.fragment(&format!("{p}b.service"), unit(None));
    let v = g.set();
    g.put(format!("{ETC}/{p}a.service.d/50-x.conf"), dropin(Some(v)));
    g.link(
        format!("{RUN}/{p}b.service.d"),
        &format!("{ETC}/{p}a.service.d"),
    );
}

fn templates(g: &mut Gen) {
    let p = g.case("template and instance drop-ins");
    let v = g.mf();
    g.put(format!("{USR}/{p}t@.service"), unit(v));
    let (d, w) = (g.dir(), g.mf());
    g.put(format!("{d}/{p}t@.service.d/50-t.conf"), dropin(w));
    let (e, x) = (g.dir(), g.mf());
    g.put(format!("{e}/{p}t@x.service.d/60-i.conf"), dropin(x));
    g.probe(&format!("{p}t@x.service"));
    g.probe(&format!("{p}t@y.service"));

    let p = g.case("template drop-in in /etc hides a same-named instance drop-in in /usr");
    g.put(format!("{USR}/{p}t@.service"), unit(None));
    let (a, b) = (g.set(), g.set());
    g.put(format!("{ETC}/{p}t@.service.d/10-a.conf"), dropin(Some(a)));
    g.put(format!("{USR}/{p}t@x.service.d/10-a.conf"), dropin(Some(b)));
    g.probe(&format!("{p}t@x.service"));

    let p = g.case("instance drop-in beats a same-named template drop-in in the same directory");
    let d = g.dir();
    g.put(format!("{USR}/{p}t@.service"), unit(None));
    let (a, b) = (g.set(), g.set());
    g.put(format!("{d}/{p}t@.service.d/10-a.conf"), dropin(Some(a)));
    g.put(format!("{d}/{p}t@x.service.d/10-a.conf"), dropin(Some(b)));
    g.probe(&format!("{p}t@x.service"));

    let p = g.case("an instance with its own fragment beside the template");
    g.put(format!("{USR}/{p}t@.service"), unit(Some("slave")));
    let d = g.dir();
    g.put(format!("{d}/{p}t@x.service"), unit(Some("private")));
    g.probe(&format!("{p}t@x.service"));
    g.probe(&format!("{p}t@y.service"));
}

fn prefixes(g: &mut Gen) {
    let p = g.case("prefix drop-ins foo-bar- and foo-, and same names across them");
    g.fragment(&format!("{p}-foo-bar.service"), unit(None));
    let (a, b, c) = (g.mf(), g.mf(), g.set());
    let (d1, d2) = (g.dir(), g.dir());
    g.put(format!("{d1}/{p}-foo-.service.d/50-p.conf"), dropin(a));
    g.put(format!("{d2}/{p}-.service.d/40-p.conf"), dropin(b));
    let (d3, d4) = (g.dir(), g.dir());
    g.put(format!("{d3}/{p}-.service.d/60-same.conf"), dropin(Some(c)));
    let e = g.set();
    g.put(
        format!("{d4}/{p}-foo-.service.d/60-same.conf"),
        dropin(Some(e)),
    );
    g.fragment(&format!("{p}-foo.service"), unit(Some("slave")));

    let p = g.case("prefix drop-ins of an instance: foo-@x.service.d and foo-@.service.d");
    g.put(format!("{USR}/{p}-foo-bar@.service"), unit(None));
    let (a, b, c) = (g.mf(), g.mf(), g.mf());
    let (d1, d2, d3) = (g.dir(), g.dir(), g.dir());
    g.put(format!("{d1}/{p}-foo-@x.service.d/50-i.conf"), dropin(a));
    g.put(format!("{d2}/{p}-foo-@.service.d/40-t.conf"), dropin(b));
    g.put(format!("{d3}/{p}-foo-bar@.service.d/30-t.conf"), dropin(c));
    g.probe(&format!("{p}-foo-bar@x.service"));
    g.probe(&format!("{p}-foo-bar@y.service"));
}

// ------------------------------------------------------------------------------- the answers

/// What systemd says about a unit.
#[derive(Debug)]
struct Systemd {
    load_state: String,
    fragment: String,
    dropins: Vec<String>,
    names: Vec<String>,
    load_error: String,
    mount_flags: u64,
}

fn busctl_json(c: &Container, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json=short"];
    all.extend_from_slice(args);
    c.busctl(&all)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("busctl {args:?}: not JSON ({e}): {l}"))["data"]
                .clone()
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn ask_systemd(c: &Container, name: &str) -> Systemd {
    let path = busctl_json(
        c,
        &[
            "call",
            SYSTEMD,
            MANAGER_PATH,
            MANAGER,
            "LoadUnit",
            "s",
            name,
        ],
    );
    let path = path
        .first()
        .and_then(|p| p[0].as_str())
        .unwrap_or_else(|| panic!("LoadUnit {name}: {path:?}"))
        .to_string();
    let unit = busctl_json(
        c,
        &[
            "get-property",
            SYSTEMD,
            &path,
            "org.freedesktop.systemd1.Unit",
            "LoadState",
            "FragmentPath",
            "DropInPaths",
            "Names",
            "LoadError",
        ],
    );
    assert_eq!(unit.len(), 5, "properties of {name}: {unit:?}");
    let mf = busctl_json(
        c,
        &[
            "get-property",
            SYSTEMD,
            &path,
            "org.freedesktop.systemd1.Service",
            "MountFlags",
        ],
    );
    Systemd {
        load_state: unit[0].as_str().unwrap_or_default().to_string(),
        fragment: unit[1].as_str().unwrap_or_default().to_string(),
        dropins: strings(&unit[2]),
        names: strings(&unit[3]),
        load_error: strings(&unit[4]).join(": "),
        mount_flags: mf.first().and_then(Value::as_u64).unwrap_or(u64::MAX),
    }
}

/// What `dropfix show` says, run on the host against the container's root.
#[derive(Debug)]
struct Dropfix {
    code: i32,
    json: Value,
    stderr: String,
}

fn ask_dropfix(c: &Container, name: &str) -> Dropfix {
    let out = Command::new(support::dropfix_bin())
        .arg("--root")
        .arg(c.root())
        .args(["--format", "json", "show", name])
        .output()
        .unwrap_or_else(|e| panic!("cannot run dropfix: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    Dropfix {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// Then the fix itself: every loaded unit with MountFlags set is fixed in one `dropfix fix`
/// run (each unit on its own: one dropfix refuses does not stop the others), systemd reloads,
/// and every unit dropfix reports fixed must now have MountFlags unset; every unit it refuses
/// must say why.
fn fix_them_all(
    c: &Container,
    major: u32,
    answers: &[(&str, &str, Systemd, Dropfix)],
) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    let mut ids = BTreeSet::new();
    for (name, _, s, d) in answers {
        if s.load_state != "loaded" || s.mount_flags == 0 || d.code != 0 {
            continue;
        }
        // One name per unit (aliases share the unit).
        let id = d.json["unit"].as_str().unwrap_or(name).to_string();
        if ids.insert(id) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return vec![format!(
            "systemd {major}: no unit with MountFlags set to fix"
        )];
    }
    let out = Command::new(support::dropfix_bin())
        .arg("--root")
        .arg(c.root())
        .args([
            "--format",
            "json",
            "fix",
            "--systemd-version",
            &major.to_string(),
        ])
        .args(&names)
        .output()
        .unwrap_or_else(|e| panic!("cannot run dropfix: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "dropfix fix panicked: {stderr}"
    );
    let j: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("dropfix fix gave no JSON ({e}): {stderr}"));
    c.busctl(&[
        "--timeout=180",
        "call",
        SYSTEMD,
        MANAGER_PATH,
        MANAGER,
        "Reload",
    ]);
    let mut problems = Vec::new();
    let unit_errors = j["units"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| !u["error"].is_null())
        .count();
    if !j["error"].is_null() && unit_errors == 0 {
        problems.push(format!(
            "systemd {major}: dropfix fix failed as a whole: {}",
            j["error"]["message"]
        ));
    }
    let (mut fixed, mut refused) = (0, 0);
    for u in j["units"].as_array().into_iter().flatten() {
        let unit = u["unit"].as_str().unwrap_or_default();
        if !u["error"].is_null() {
            refused += 1;
            if u["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                problems.push(format!(
                    "{unit} [systemd {major}]: refused without a reason"
                ));
            }
            continue;
        }
        fixed += 1;
        let after = ask_systemd(c, unit);
        if after.mount_flags != 0 {
            problems.push(format!(
                "{unit} [systemd {major}]: after `dropfix fix` and a reload systemd reports MountFlags={} ({})",
                flags_name(after.mount_flags),
                u["files"]
            ));
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "oracle: systemd {major}: fix on {} units with MountFlags set: {fixed} fixed and unset after a reload, {refused} refused with a reason (exit {})",
        names.len(),
        out.status.code().unwrap_or(-1)
    );
    if fixed == 0 {
        problems.push(format!("systemd {major}: dropfix fixed none of {names:?}"));
    }
    problems
}

/// In-container paths resolved inside the container (`realpath -m`), for "the same file".
struct Resolver(BTreeMap<String, String>);

impl Resolver {
    fn new(c: &Container, paths: &BTreeSet<String>) -> Self {
        let list: Vec<&String> = paths.iter().filter(|p| p.starts_with('/')).collect();
        let text: String = list.iter().map(|p| format!("{p}\n")).collect();
        c.write_file("/run/dropfix-oracle-paths", &text);
        let out = c.sh_ok(
            "while IFS= read -r p; do realpath -m -- \"$p\" || echo \"?$p\"; done < /run/dropfix-oracle-paths",
        );
        let real: Vec<&str> = out.lines().collect();
        assert_eq!(real.len(), list.len(), "realpath gave {out}");
        Resolver(
            list.into_iter()
                .cloned()
                .zip(real.into_iter().map(str::to_string))
                .collect(),
        )
    }
    /// The file a path names, every link followed (a fragment).
    fn file(&self, p: &str) -> String {
        self.0.get(p).cloned().unwrap_or_else(|| p.to_string())
    }
    /// A drop-in: its directory resolved, its own name kept (a mask stays itself).
    fn dropin(&self, p: &str) -> String {
        match p.rsplit_once('/') {
            Some((dir, base)) => format!(
                "{}/{base}",
                self.file(if dir.is_empty() { "/" } else { dir })
            ),
            None => p.to_string(),
        }
    }
    fn wanted(s: &Systemd, d: &Dropfix) -> Vec<String> {
        let mut v = vec![s.fragment.clone()];
        v.extend(
            s.dropins
                .iter()
                .filter_map(|p| p.rsplit_once('/'))
                .map(|x| x.0.to_string()),
        );
        if let Some(f) = d.json["fragment"].as_str() {
            v.push(f.to_string());
        }
        if let Some(f) = d.json["error"]["path"].as_str() {
            v.push(f.to_string());
        }
        for x in d.json["dropins"].as_array().into_iter().flatten() {
            if let Some((dir, _)) = x["path"].as_str().and_then(|p| p.rsplit_once('/')) {
                v.push(dir.to_string());
            }
        }
        v
    }
}

/// MountFlags as systemd stores it (the MS_* propagation bit).
fn mount_flag_bits(v: &str) -> Option<u64> {
    match v {
        "" => Some(0),
        "private" => Some(262_144),
        "slave" => Some(524_288),
        "shared" => Some(1_048_576),
        _ => None,
    }
}

fn flags_name(bits: u64) -> String {
    match bits {
        0 => "unset".into(),
        262_144 => "private".into(),
        524_288 => "slave".into(),
        1_048_576 => "shared".into(),
        b => b.to_string(),
    }
}

/// Every way dropfix's answer differs from systemd's, by the contract in the module doc.
fn compare(s: &Systemd, d: &Dropfix, r: &Resolver) -> Vec<String> {
    let mut out = Vec::new();
    let message = d.json["error"]["message"].as_str().unwrap_or_default();
    let said = || {
        if d.code == 0 {
            "exit 0".to_string()
        } else {
            format!(
                "exit {} ({})",
                d.code,
                if message.is_empty() {
                    &d.stderr
                } else {
                    message
                }
            )
        }
    };
    match s.load_state.as_str() {
        "loaded" => {
            if d.code != 0 || d.json.is_null() {
                out.push(format!(
                    "load: systemd loaded it from {}; dropfix {}",
                    s.fragment,
                    said()
                ));
                return out;
            }
            let frag = d.json["fragment"].as_str().unwrap_or_default();
            if r.file(frag) != r.file(&s.fragment) {
                out.push(format!("fragment: systemd {}; dropfix {frag}", s.fragment));
            }
            match d.json.get("names") {
                Some(n) => {
                    let ours: BTreeSet<String> = strings(n).into_iter().collect();
                    let theirs: BTreeSet<String> = s.names.iter().cloned().collect();
                    if ours != theirs {
                        out.push(format!("names: systemd {theirs:?}; dropfix {ours:?}"));
                    }
                }
                None => out.push(format!(
                    "names: systemd {:?}; dropfix has no names",
                    s.names
                )),
            }
            // systemd lists a masking drop-in (empty, or a link to /dev/null) in DropInPaths:
            // it reads it as an empty file. dropfix calls those "masked".
            let ours: Vec<String> = d.json["dropins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| matches!(x["status"].as_str(), Some("applied" | "partial" | "masked")))
                .filter_map(|x| x["path"].as_str())
                .map(|p| r.dropin(p))
                .collect();
            let theirs: Vec<String> = s.dropins.iter().map(|p| r.dropin(p)).collect();
            if ours != theirs {
                let shown: Vec<String> = d.json["dropins"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        format!(
                            "{} ({})",
                            x["path"].as_str().unwrap_or("?"),
                            x["status"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                let mut a = ours.clone();
                let mut b = theirs.clone();
                a.sort();
                b.sort();
                let what = if a == b { "drop-in order" } else { "drop-ins" };
                out.push(format!(
                    "{what}: systemd {:?}; dropfix {shown:?}",
                    s.dropins
                ));
            }
            let ours = d.json["settings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x["key"] == "MountFlags" && x["section"] == "Service")
                .filter_map(|x| x["value"].as_str())
                .next_back()
                .unwrap_or("");
            if mount_flag_bits(ours) != Some(s.mount_flags) {
                out.push(format!(
                    "MountFlags: systemd {}; dropfix {ours:?}",
                    flags_name(s.mount_flags)
                ));
            }
        }
        "error" | "bad-setting" => {
            let path = d.json["error"]["path"].as_str().unwrap_or_default();
            if d.code != 1 {
                out.push(format!(
                    "load: systemd {} ({}); dropfix {}",
                    s.load_state,
                    s.load_error,
                    said()
                ));
            } else if !s.fragment.is_empty() && r.file(path) != r.file(&s.fragment) {
                out.push(format!(
                    "error path: systemd {} in {}; dropfix error names {path:?} ({message})",
                    s.load_state, s.fragment
                ));
            }
        }
        "not-found" | "masked" => {
            let word = if s.load_state == "masked" {
                "masked"
            } else {
                "not found"
            };
            if d.code != 1 || !message.contains(word) {
                out.push(format!(
                    "load: systemd {}; dropfix {}",
                    s.load_state,
                    said()
                ));
            }
        }
        other => out.push(format!(
            "load: systemd says {other}, which the oracle does not know"
        )),
    }
    out
}

// ------------------------------------------------------------------------------- the run

fn oracle(suite: &str, major: u32) {
    let seed = seed();
    let tree = generate(seed);
    let rootfs = support::systemd_rootfs(suite);
    let t0 = Instant::now();
    let c = Container::boot(
        &format!("oracle-{major}"),
        &tree.setup(Setup::new().no_docker().rootfs(&rootfs)),
    );
    let version = busctl_json(
        &c,
        &["get-property", SYSTEMD, MANAGER_PATH, MANAGER, "Version"],
    );
    let version = version
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert!(
        version.starts_with(&format!("{major}.")) || version == major.to_string(),
        "{suite} runs systemd {version}, not {major}"
    );
    tree.place_run(&c);
    c.busctl(&[
        "--timeout=180",
        "call",
        SYSTEMD,
        MANAGER_PATH,
        MANAGER,
        "Reload",
    ]);
    let answers: Vec<(&str, &str, Systemd, Dropfix)> = tree
        .probes
        .iter()
        .map(|(name, shape)| {
            (
                name.as_str(),
                shape.as_str(),
                ask_systemd(&c, name),
                ask_dropfix(&c, name),
            )
        })
        .collect();
    if let Some(dir) = std::env::var_os("DROPFIX_ORACLE_DUMP") {
        // systemd's answers alone, one unit a line: diff two versions' files to see what changed
        let text: String = answers
            .iter()
            .map(|(name, _, s, _)| {
                format!(
                    "{name}\t{}\t{}\t{:?}\t{:?}\t{}\t{}\n",
                    s.load_state,
                    s.fragment,
                    s.names,
                    s.dropins,
                    flags_name(s.mount_flags),
                    s.load_error
                )
            })
            .collect();
        let path = std::path::Path::new(&dir).join(format!("systemd-{major}.tsv"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    let paths: BTreeSet<String> = answers
        .iter()
        .flat_map(|(_, _, s, d)| Resolver::wanted(s, d))
        .collect();
    let resolver = Resolver::new(&c, &paths);
    let mut problems = Vec::new();
    let mut agreed = 0;
    for (name, shape, s, d) in &answers {
        assert!(
            !d.stderr.contains("panicked"),
            "dropfix panicked on {name}: {}",
            d.stderr
        );
        let diff = compare(s, d, &resolver);
        if diff.is_empty() {
            agreed += 1;
        }
        for x in diff {
            problems.push(format!("{name} [systemd {major}] ({shape}): {x}"));
        }
    }
    // straight to stderr, past cargo's capture: the figures show in every run's log
    let _ = writeln!(
        std::io::stderr(),
        "oracle: systemd {version}: {} units compared, {agreed} agreed, {} disagreements ({:.1}s; seed {seed}, DROPFIX_ORACLE_SEED={seed} replays)",
        answers.len(),
        problems.len(),
        t0.elapsed().as_secs_f64()
    );
    if problems.is_empty() {
        problems.extend(fix_them_all(&c, major, &answers));
    }
    if problems.is_empty() {
        return;
    }
    let list = problems.join("\n  ");
    // A report-only run is for working on dropfix; under CI every disagreement fails.
    if std::env::var("DROPFIX_ORACLE_REPORT").is_ok_and(|v| v == "1")
        && std::env::var("CI").as_deref() != Ok("true")
    {
        let _ = writeln!(
            std::io::stderr(),
            "oracle: systemd {major} disagreements (DROPFIX_ORACLE_REPORT=1):\n  {list}"
        );
        return;
    }
    panic!(
        "dropfix and systemd {version} disagree on {} of {} units (seed {seed}; DROPFIX_ORACLE_SEED={seed} replays):\n  {list}",
        answers.len() - agreed,
        answers.len()
    );
}
