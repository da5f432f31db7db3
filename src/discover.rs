//! Discovery: root + unit name -> the fragment and every drop-in, found along systemd's unit
//! search path (`unit_file_build_name_map()`, `unit_file_find_dropin_paths()`).

use crate::root::{basename, join, parent, Entry, Root};
use crate::syntax::{self, UnitFile};
use crate::unitname::{self, UnitName};
use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Alias names by the unit name they point to.
/// systemd's unit name map (`unit_file_build_name_map()`, src/shared/unit-file.c): what each
/// name on the search path stands for, the first directory holding the name winning.
#[derive(Debug, Default)]
struct NameMap {
    ids: HashMap<String, Id>,
}

/// The inverse of the name map: a unit file's name -> every name that stands for it.
type Inverse = HashMap<String, Vec<String>>;

/// One entry of the name map.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    /// A unit file, or the link of a linked unit (in-root path of the name in its directory).
    Path(String),
    /// An alias: a link to another name inside the search path (the target's basename).
    Alias(String),
    /// A link to /dev/null.
    Masked(String),
}

/// Listings and file types read once and shared by every unit looked up, so scanning
/// thousands of units costs one `readdir` per directory instead of one per unit.
pub struct Index<'a> {
    root: &'a Root,
    dirs: Vec<SearchDir>,
    listings: RefCell<HashMap<String, Rc<Vec<String>>>>,
    entries: RefCell<HashMap<String, Entry>>,
    names: RefCell<Option<Rc<NameMap>>>,
    /// The inverse of the name map, without and with instance aliases.
    inverses: RefCell<[Option<Rc<Inverse>>; 2]>,
    resolved: RefCell<Option<Rc<Vec<String>>>>,
}

impl<'a> Index<'a> {
    /// An index over `root` and its search path.
    pub fn new(root: &'a Root, dirs: &[SearchDir]) -> Self {
        Index {
            root,
            dirs: dirs.to_vec(),
            listings: RefCell::new(HashMap::new()),
            entries: RefCell::new(HashMap::new()),
            names: RefCell::new(None),
            inverses: RefCell::new([None, None]),
            resolved: RefCell::new(None),
        }
    }

    /// The root.
    pub fn root(&self) -> &Root {
        self.root
    }

    /// The search path.
    pub fn dirs(&self) -> &[SearchDir] {
        &self.dirs
    }

    /// Sorted names in a directory (cached).
    pub fn list_dir(&self, dir: &str) -> Result<Rc<Vec<String>>> {
        if let Some(l) = self.listings.borrow().get(dir) {
            return Ok(l.clone());
        }
        // The entry types come with the listing: no stat for a plain file or directory.
        let typed = self.root.list_dir_typed(dir)?;
        let mut entries = self.entries.borrow_mut();
        for (n, kind) in &typed {
            if let Some(k) = kind {
                entries.entry(join(dir, n)).or_insert_with(|| k.clone());
            }
        }
        let l = Rc::new(typed.into_iter().map(|(n, _)| n).collect::<Vec<_>>());
        self.listings
            .borrow_mut()
            .insert(dir.to_string(), l.clone());
        Ok(l)
    }

    /// What is at `path` (cached); a name missing from its search directory's listing is
    /// known to be missing without asking the kernel.
    pub fn entry(&self, path: &str) -> Result<Entry> {
        if let Some(e) = self.entries.borrow().get(path) {
            return Ok(e.clone());
        }
        let dir = parent(path);
        if self.dirs.iter().any(|d| d.path == dir) {
            self.list_dir(dir)?;
        }
        if let Some(l) = self.listings.borrow().get(dir) {
            if l.binary_search_by(|n| n.as_str().cmp(basename(path)))
                .is_err()
            {
                return Ok(Entry::Missing);
            }
        }
        let e = self.root.entry(path)?;
        self.entries
            .borrow_mut()
            .insert(path.to_string(), e.clone());
        Ok(e)
    }

    /// The search directories with symlinks resolved (cached).
    fn resolved_dirs(&self) -> Result<Rc<Vec<String>>> {
        if let Some(r) = self.resolved.borrow().as_ref() {
            return Ok(r.clone());
        }
        let r = Rc::new(
            self.dirs
                .iter()
                .map(|d| self.root.resolve(&d.path))
                .collect::<Result<Vec<_>>>()?,
        );
        *self.resolved.borrow_mut() = Some(r.clone());
        Ok(r)
    }

    /// Resolve symlinks inside the root.
    pub fn resolve(&self, path: &str) -> Result<String> {
        self.root.resolve(path)
    }

    /// Read a file.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.root.read(path)
    }

    /// Every unit file name along the search path (fragments and aliases), sorted, unique.
    pub fn unit_names(&self) -> Result<Vec<String>> {
        let mut out = std::collections::BTreeSet::new();
        for d in &self.dirs {
            for n in self.list_dir(&d.path)?.iter() {
                if unitname::check(n, true).is_ok() {
                    out.insert(n.clone());
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// What a symlink named `name` in search directory `dir` is to systemd
    /// (`unit_file_resolve_symlink()`): the link text is made absolute and `.`/`..` removed
    /// without following the last component (it need not exist); a target inside the search
    /// path (at any depth) makes an alias of the target's basename, anything else a linked unit.
    fn classify_link(&self, dir: &str, name: &str, target: &std::path::Path) -> Result<LinkKind> {
        if is_dev_null(target) {
            return Ok(LinkKind::Masked);
        }
        let text = target.to_string_lossy();
        let joined = if text.starts_with('/') {
            text.into_owned()
        } else {
            join(dir, &text)
        };
        let lexical = normalize(&joined);
        let simplified = match self.root.resolve(parent(&lexical)) {
            Ok(p) => join(&p, basename(&lexical)),
            Err(_) => lexical.clone(),
        };
        let resolved = self.resolved_dirs()?;
        let inside = self
            .dirs
            .iter()
            .map(|d| d.path.as_str())
            .chain(resolved.iter().map(String::as_str))
            .any(|d| under(&simplified, d) || under(&lexical, d));
        if !inside {
            return Ok(LinkKind::Linked);
        }
        let target_name = basename(&simplified).to_string();
        if target_name == name {
            return Ok(LinkKind::SelfLink);
        }
        if !alias_compatible(name, &target_name) {
            return Ok(LinkKind::Invalid);
        }
        Ok(LinkKind::Alias(target_name))
    }

    /// The name map, built once.
    fn name_map(&self) -> Result<Rc<NameMap>> {
        if let Some(m) = self.names.borrow().as_ref() {
            return Ok(m.clone());
        }
        let mut ids: HashMap<String, Id> = HashMap::new();
        for d in &self.dirs {
            let names = self.list_dir(&d.path)?;
            for n in names.iter() {
                if unitname::check(n, true).is_err() || ids.contains_key(n) {
                    continue;
                }
                let path = join(&d.path, n);
                let id = match self.entry(&path)? {
                    Entry::Missing | Entry::Dir => continue,
                    Entry::Symlink(t) => match self.classify_link(&d.path, n, &t)? {
                        LinkKind::Masked => Id::Masked(path),
                        LinkKind::Alias(to) => Id::Alias(to),
                        LinkKind::Linked => Id::Path(path),
                        // A link to its own name inside the search path, or an alias systemd
                        // refuses: the name stays free for lower directories.
                        LinkKind::SelfLink | LinkKind::Invalid => continue,
                    },
                    Entry::File => Id::Path(path),
                };
                ids.insert(n.clone(), id);
            }
        }
        let m = Rc::new(NameMap { ids });
        *self.names.borrow_mut() = Some(m.clone());
        Ok(m)
    }

    /// `unit_ids_map_get()`: follow aliases to a unit file (or a mask), at most 8 hops.
    fn lookup(&self, name: &str) -> Result<Option<Id>> {
        let m = self.name_map()?;
        let mut id = name.to_string();
        for _ in 0..8 {
            match m.ids.get(&id) {
                None => return Ok(None),
                Some(Id::Alias(to)) => id = to.clone(),
                Some(other) => return Ok(Some(other.clone())),
            }
        }
        Ok(None)
    }

    /// The names that stand for the unit file named `dst` (the inverse of the name map), as
    /// systemd builds it: every name whose aliases end at a file called `dst`; a name that is
    /// an instance linked to a template counts for that instance of the template (v248+).
    /// The inverse is built once per index (a scan of thousands of units asks it per unit).
    fn names_for(&self, dst: &str, instance_aliases: bool) -> Result<Vec<String>> {
        let inv = self.inverse(instance_aliases)?;
        Ok(inv.get(dst).cloned().unwrap_or_default())
    }

    fn inverse(&self, instance_aliases: bool) -> Result<Rc<Inverse>> {
        let slot = if instance_aliases { 1 } else { 0 };
        if let Some(m) = self.inverses.borrow()[slot].as_ref() {
            return Ok(m.clone());
        }
        let m = self.name_map()?;
        let mut inv: Inverse = HashMap::new();
        let mut srcs: Vec<&String> = m.ids.keys().collect();
        srcs.sort();
        for src in srcs {
            let Some(Id::Path(p)) = self.lookup(src)? else {
                continue;
            };
            let mut d = basename(&p).to_string();
            if d != *src && self.root.read(&p).map(|x| x.is_empty()).unwrap_or(true) {
                continue; // an alias of an empty (masked) file names nothing
            }
            if is_template(&d) {
                if let Some(inst) = instance_of(src) {
                    if !instance_aliases {
                        continue; // before v248 such a link names nothing
                    }
                    d = with_instance(&d, inst);
                }
            }
            inv.entry(d).or_default().push(src.clone());
        }
        let inv = Rc::new(inv);
        self.inverses.borrow_mut()[slot] = Some(inv.clone());
        Ok(inv)
    }
}

/// The system manager's unit search path, highest priority first (v252 `systemd-analyze
/// unit-paths`; `/usr/lib64/systemd/system` as found on CoreOS).
pub const SEARCH_PATH: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/usr/lib64/systemd/system",
    "/run/systemd/generator.late",
];

/// Where dropfix writes: the administrator's directory.
pub const ETC_UNITS: &str = "/etc/systemd/system";
/// The one directory that outranks [`ETC_UNITS`] and is still the administrator's.
pub const ETC_CONTROL: &str = "/etc/systemd/system.control";

/// A search-path directory that exists in the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDir {
    /// In-root path as systemd names it.
    pub path: String,
    /// Position in [`SEARCH_PATH`]: lower wins.
    pub rank: usize,
}

/// The search path of `root`: existing directories, duplicates (same inode) dropped, first kept.
pub fn search_path(root: &Root) -> Result<Vec<SearchDir>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (rank, p) in SEARCH_PATH.iter().enumerate() {
        let keep = match root.dir_id(p)? {
            Some(id) if seen.contains(&id) => false,
            Some(id) => {
                seen.push(id);
                true
            }
            // The administrator's directories count even before they exist: dropfix creates them.
            None => *p == ETC_UNITS || *p == ETC_CONTROL,
        };
        if keep {
            out.push(SearchDir {
                path: p.to_string(),
                rank,
            });
        }
    }
    Ok(out)
}

/// The rank [`ETC_CONTROL`] has in the search path (the highest).
pub fn control_rank() -> usize {
    SEARCH_PATH
        .iter()
        .position(|p| *p == ETC_CONTROL)
        .unwrap_or(0)
}

/// The rank [`ETC_UNITS`] has in the search path.
pub fn etc_rank() -> usize {
    SEARCH_PATH
        .iter()
        .position(|p| *p == ETC_UNITS)
        .unwrap_or(4)
}

/// How the fragment was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A regular file in a search directory.
    None,
    /// A symlink to a file outside the search path (`systemctl link`).
    Linked(String),
    /// A same-named symlink to a file in another search directory.
    SameName(String),
}

/// The unit file systemd loads for a name.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// Path as systemd reports it in `FragmentPath` (v252: the name in the search directory).
    pub path: String,
    /// Rank of the search directory it was found in.
    pub rank: usize,
    /// How it was reached.
    pub link: Link,
    /// Raw bytes.
    pub data: Vec<u8>,
    /// Lower-priority files of the same name it hides.
    pub shadows: Vec<String>,
}

/// One `*.conf` found in a drop-in directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropIn {
    /// In-root path.
    pub path: String,
    /// Rank of the search directory its `.d` directory sits in.
    pub rank: usize,
    /// Visiting order of its directory: the first basename seen wins.
    pub order: usize,
    /// A symlink to /dev/null or an empty file: hides same-named lower drop-ins, sets nothing.
    pub masked: bool,
    /// Raw bytes (empty when masked).
    pub data: Vec<u8>,
}

impl DropIn {
    /// File name, the key of systemd's ordering and overriding.
    pub fn basename(&self) -> &str {
        basename(&self.path)
    }
}

/// Everything systemd would read for one unit.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The unit's primary name (an alias given by the user is resolved).
    pub unit: UnitName,
    /// Other names whose drop-ins apply (aliases).
    pub aliases: Vec<String>,
    /// The fragment.
    pub fragment: Fragment,
    /// Every drop-in directory systemd searches, in its order, with the rank of its search dir.
    pub dropin_dirs: Vec<(String, usize)>,
    /// Every drop-in file found, in directory order (overridden ones included).
    pub dropins: Vec<DropIn>,
    /// Files in drop-in directories systemd does not read, and why.
    pub skipped: Vec<(String, String)>,
}

/// Why a unit cannot be worked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No file of that name on the search path.
    NotFound,
    /// The fragment is a link to /dev/null or an empty file.
    Masked(String),
}

/// Does a file of this name exist along the search path (even masked)?
pub fn exists(root: &Root, dirs: &[SearchDir], name: &str) -> Result<bool> {
    for d in dirs {
        if root.entry(&join(&d.path, name))? != Entry::Missing {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Find the fragment and drop-ins of `name`. `version` gates directories systemd only reads
/// from a given release on (prefix dirs v239, type dirs v244); unknown means current rules.
pub fn discover(
    root: &Root,
    dirs: &[SearchDir],
    name: &UnitName,
    version: Option<u32>,
) -> Result<std::result::Result<Discovered, Missing>> {
    discover_in(&Index::new(root, dirs), name, version)
}

/// [`discover`] through a shared [`Index`].
pub fn discover_in(
    ix: &Index,
    name: &UnitName,
    version: Option<u32>,
) -> Result<std::result::Result<Discovered, Missing>> {
    let dirs = ix.dirs();
    let instance_aliases = version.is_none_or(|v| v >= 248);
    // The name as asked for, then each alias in turn (an alias from an instance to a
    // template continues with that template's instance), and for an instance whose name has
    // no file, its template the same way.
    let mut current = name.as_str().to_string();
    let mut fragment = None;
    let mut primary = name.clone();
    let mut tried_template = false;
    for _ in 0..16 {
        match find_fragment(ix, &current)? {
            FragmentLookup::Found(f) => {
                fragment = Some(f);
                break;
            }
            FragmentLookup::Alias(to) => {
                current = match instance_of(&current) {
                    Some(inst) if is_template(&to) && !is_template(&current) => {
                        with_instance(&to, inst)
                    }
                    _ => to,
                };
            }
            FragmentLookup::Masked(p) => return Ok(Err(Missing::Masked(p))),
            FragmentLookup::NotFound => {
                // An instance falls back to its template's fragment (aliases followed).
                let template = UnitName::parse(&current).ok().and_then(|n| n.template());
                match template {
                    Some(t) if !tried_template => {
                        tried_template = true;
                        current = t;
                    }
                    _ => return Ok(Err(Missing::NotFound)),
                }
            }
        }
    }
    let Some(fragment) = fragment else {
        bail!("{name}: alias chain too long");
    };
    // The unit is the one its fragment is named after (an instance of it for a template).
    let frag_name = basename(&fragment.path).to_string();
    let inst = instance_of(name.as_str())
        .map(str::to_string)
        .or_else(|| instance_of(&current).map(str::to_string));
    let id = match (&inst, is_template(&frag_name)) {
        (Some(i), true) => with_instance(&frag_name, i),
        _ => frag_name.clone(),
    };
    if let Ok(n) = UnitName::parse(&id) {
        primary = n;
    }
    // Every name of the unit (`add_names()`): the name asked for and its aliases, then the
    // fragment's name and its aliases, each template alias made an instance of this one.
    let mut names: Vec<String> = Vec::new();
    let add = |n: String, names: &mut Vec<String>| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    // Before v248 an instance linked to a template is not a name of that instance (pinned by
    // the oracle: 247 leaves pb@x.service out of p@x.service's names and drop-ins).
    let instance_alias_asked = instance_of(name.as_str()).is_some()
        && matches!(ix.name_map()?.ids.get(name.as_str()), Some(Id::Alias(to)) if is_template(to));
    for base in [name.as_str().to_string(), frag_name.clone()] {
        if !instance_aliases && instance_alias_asked && base == name.as_str() {
            continue;
        }
        let own = match (&inst, is_template(&base)) {
            (Some(i), true) => with_instance(&base, i),
            _ => base.clone(),
        };
        if UnitName::parse(&own).is_ok() {
            add(own, &mut names);
        }
        for alias in ix.names_for(&base, instance_aliases)? {
            let n = match (&inst, is_template(&alias)) {
                (Some(i), true) => {
                    let n = with_instance(&alias, i);
                    // An instance with a fragment of its own elsewhere is not an alias.
                    if let Some(Id::Path(p)) = ix.lookup(&n)? {
                        if basename(&p) != frag_name {
                            continue;
                        }
                    }
                    n
                }
                _ => alias,
            };
            if UnitName::parse(&n).is_ok() {
                add(n, &mut names);
            }
        }
    }
    let aliases: Vec<String> = names
        .into_iter()
        .filter(|n| n != primary.as_str())
        .collect();
    let dropin_dirs = dropin_dirs(dirs, &primary, &aliases, version);
    let mut dropins = Vec::new();
    let mut skipped = Vec::new();
    for (order, (dir, rank)) in dropin_dirs.iter().enumerate() {
        match ix.entry(dir)? {
            Entry::Dir => {}
            // systemd 250 and later open a symlinked drop-in directory through its link text
            // taken from / (PID 1's working directory): an absolute link is followed, a relative
            // one only where it happens to resolve from / (pinned by the oracle: 247 reads
            // relative links, 252 and 257 do not).
            Entry::Symlink(t) => {
                let text = t.to_string_lossy();
                if version.is_none_or(|v| v >= 250) && !text.starts_with('/') {
                    let from_root = normalize(&format!("/{text}"));
                    if !matches!(ix.root().entry(&from_root)?, Entry::Dir) {
                        skipped.push((
                            dir.clone(),
                            format!("a relative link ({text}) that does not resolve from /: systemd does not read it"),
                        ));
                        continue;
                    }
                }
            }
            _ => continue,
        }
        for f in ix.list_dir(dir)?.iter() {
            if !f.ends_with(".conf") {
                skipped.push((join(dir, f), "not a .conf file".to_string()));
                continue;
            }
            if hidden_or_backup(f) {
                skipped.push((join(dir, f), "a hidden or backup file".to_string()));
                continue;
            }
            let path = join(dir, f);
            let (masked, data) = match ix.entry(&path)? {
                Entry::Missing | Entry::Dir => continue,
                Entry::Symlink(t) if is_dev_null(&t) => (true, Vec::new()),
                Entry::File => {
                    let data = ix.read(&path)?;
                    (data.is_empty(), data)
                }
                Entry::Symlink(_) => {
                    let real = ix.resolve(&path)?;
                    match ix.root().entry(&real)? {
                        Entry::File => {}
                        // A dangling link is listed and hides same-named drop-ins below it,
                        // but sets nothing (systemd cannot read it).
                        Entry::Missing => {
                            dropins.push(DropIn {
                                path,
                                rank: *rank,
                                order,
                                masked: true,
                                data: Vec::new(),
                            });
                            continue;
                        }
                        _ => {
                            skipped
                                .push((path, "a link to something other than a file".to_string()));
                            continue;
                        }
                    }
                    let data = ix.read(&path)?;
                    (data.is_empty(), data)
                }
            };
            dropins.push(DropIn {
                path,
                rank: *rank,
                order,
                masked,
                data,
            });
        }
    }
    Ok(Ok(Discovered {
        unit: primary,
        aliases,
        fragment,
        dropin_dirs,
        dropins,
        skipped,
    }))
}

enum FragmentLookup {
    Found(Fragment),
    Alias(String),
    Masked(String),
    NotFound,
}

fn is_dev_null(target: &std::path::Path) -> bool {
    target == std::path::Path::new("/dev/null")
}

/// What a symlink in a search directory is to systemd.
enum LinkKind {
    /// To /dev/null.
    Masked,
    /// To another name inside the search path.
    Alias(String),
    /// To its own name inside the search path: ignored.
    SelfLink,
    /// An alias systemd refuses (another type, or template and plain names mixed).
    Invalid,
    /// To a file outside the search path (`systemctl link`).
    Linked,
}

/// `/a/./b/../c` -> `/a/c`, lexically.
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Is `path` inside directory `dir` (at any depth)?
fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

fn is_template(name: &str) -> bool {
    name.rsplit_once('.')
        .and_then(|(stem, _)| stem.split_once('@'))
        .is_some_and(|(_, i)| i.is_empty())
}

fn instance_of(name: &str) -> Option<&str> {
    let (stem, _) = name.rsplit_once('.')?;
    let (_, i) = stem.split_once('@')?;
    (!i.is_empty()).then_some(i)
}

/// `foo@.service` + `x` -> `foo@x.service`.
fn with_instance(template: &str, instance: &str) -> String {
    match template.split_once("@.") {
        Some((p, ty)) => format!("{p}@{instance}.{ty}"),
        None => template.to_string(),
    }
}

/// `unit_validate_alias_symlink_or_warn()`: the same type; a template only to a template; a
/// plain name only to a plain name; an instance to an instance or a template.
fn alias_compatible(name: &str, target: &str) -> bool {
    let ty = |n: &str| n.rsplit_once('.').map(|(_, t)| t.to_string());
    if ty(name) != ty(target) || unitname::check(target, true).is_err() {
        return false;
    }
    let kind = |n: &str| {
        if is_template(n) {
            2
        } else if instance_of(n).is_some() {
            1
        } else {
            0
        }
    };
    matches!(
        (kind(name), kind(target)),
        (0, 0) | (2, 2) | (1, 1) | (1, 2)
    )
}

fn find_fragment(ix: &Index, name: &str) -> Result<FragmentLookup> {
    let root = ix.root();
    let mut found: Option<Fragment> = None;
    for d in ix.dirs() {
        let path = join(&d.path, name);
        let entry = ix.entry(&path)?;
        if entry == Entry::Missing || entry == Entry::Dir {
            continue;
        }
        if let Some(f) = found.as_mut() {
            f.shadows.push(path);
            continue;
        }
        let link = match &entry {
            Entry::Symlink(t) => match ix.classify_link(&d.path, name, t)? {
                LinkKind::Masked => return Ok(FragmentLookup::Masked(path)),
                LinkKind::Alias(to) => return Ok(FragmentLookup::Alias(to)),
                // systemd ignores a link to its own name inside the search path (and an alias
                // it refuses): the name is looked for further down.
                LinkKind::SelfLink | LinkKind::Invalid => continue,
                LinkKind::Linked => {
                    let real = root.resolve(&path)?;
                    if root.entry(&real)? != Entry::File {
                        bail!("{path}: symlink points to {real}, which is not a file");
                    }
                    Link::Linked(real)
                }
            },
            _ => Link::None,
        };
        let data = root.read(&path)?;
        if data.is_empty() {
            return Ok(FragmentLookup::Masked(path));
        }
        found = Some(Fragment {
            path,
            rank: d.rank,
            link,
            data,
            shadows: Vec::new(),
        });
    }
    Ok(found.map_or(FragmentLookup::NotFound, FragmentLookup::Found))
}

/// Drop-in directories in systemd's visiting order: for each name (primary first), for each
/// search dir: `<name>.d`, the template's, the prefix ones; then `<type>.d` in every search dir.
pub fn dropin_dirs(
    dirs: &[SearchDir],
    primary: &UnitName,
    aliases: &[String],
    version: Option<u32>,
) -> Vec<(String, usize)> {
    let prefixes = version.is_none_or(|v| v >= 239);
    let type_dirs = version.is_none_or(|v| v >= 244);
    let mut out: Vec<(String, usize)> = Vec::new();
    // A set for the duplicates check: a scan of `out` for each push cost a quarter of a
    // 10,000-unit scan.
    let mut seen = std::collections::HashSet::new();
    let mut push = |p: String, rank: usize, out: &mut Vec<(String, usize)>| {
        if seen.insert(p.clone()) {
            out.push((p, rank));
        }
    };
    let names = std::iter::once(primary.as_str().to_string()).chain(aliases.iter().cloned());
    for name in names {
        let mut names = Vec::new();
        dropin_names(&name, prefixes, &mut names);
        for d in dirs {
            for n in &names {
                push(join(&d.path, &format!("{n}.d")), d.rank, &mut out);
            }
        }
    }
    if type_dirs {
        for d in dirs {
            push(
                join(&d.path, &format!("{}.d", primary.unit_type())),
                d.rank,
                &mut out,
            );
        }
    }
    out
}

/// `unit_file_find_dirs()`: the name, then (recursively) its template, then its prefix with
/// the instance kept (`foo-bar@x.service` -> `foo-bar@.service`, `foo-.service`,
/// `foo-@x.service`, `foo-@.service`). Prefixes count from v239 on.
fn dropin_names(name: &str, prefixes: bool, out: &mut Vec<String>) {
    if out.iter().any(|n| n == name) {
        return;
    }
    out.push(name.to_string());
    if let Some(t) = UnitName::parse(name).ok().and_then(|n| n.template()) {
        dropin_names(&t, prefixes, out);
    }
    if !prefixes {
        return;
    }
    let Some((stem, ty)) = name.rsplit_once('.') else {
        return;
    };
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) if !i.is_empty() => (p, Some(i)),
        Some((p, _)) => (p, None),
        None => (stem, None),
    };
    let Some(prefix) = unitname::dash_prefix(prefix) else {
        return;
    };
    let built = match instance {
        Some(i) => format!("{prefix}@{i}.{ty}"),
        None => format!("{prefix}.{ty}"),
    };
    dropin_names(&built, prefixes, out);
}

/// systemd's `hidden_or_backup_file()`: dot files and package-manager leftovers are never read.
pub fn hidden_or_backup(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "~",
        ".rpmnew",
        ".rpmsave",
        ".rpmorig",
        ".dpkg-old",
        ".dpkg-new",
        ".dpkg-tmp",
        ".dpkg-dist",
        ".dpkg-bak",
        ".dpkg-backup",
        ".dpkg-remove",
        ".ucf-new",
        ".ucf-old",
        ".ucf-dist",
        ".swp",
        ".bak",
        ".old",
        ".new",
    ];
    name.starts_with('.') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The drop-ins systemd applies, in its order: first basename wins across directories (masks
/// included), then survivors sort by basename bytes regardless of directory.
pub fn applied(dropins: &[DropIn]) -> Vec<&DropIn> {
    // A stable sort by (name, order) puts each name's winner first: O(n log n), where a scan
    // of the winners for every drop-in took seconds with 10,000 of them.
    let mut by_name: Vec<&DropIn> = dropins.iter().collect();
    by_name.sort_by(|a, b| {
        a.basename()
            .as_bytes()
            .cmp(b.basename().as_bytes())
            .then(a.order.cmp(&b.order))
    });
    by_name.dedup_by(|later, first| later.basename() == first.basename());
    by_name
}

/// The drop-in that hides `d`, if any.
pub fn hidden_by<'a>(dropins: &'a [DropIn], d: &DropIn) -> Option<&'a DropIn> {
    let name = d.basename();
    dropins
        .iter()
        .filter(|w| w.basename() == name)
        .min_by_key(|w| w.order)
        .filter(|w| w.path != d.path)
}

/// A parsed source: a file systemd reads for the unit, in application order.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// In-root path.
    pub path: String,
    /// Parsed content (for a drop-in systemd stops reading part-way, the part before).
    pub file: UnitFile,
    /// Where and why systemd stops reading this drop-in: the lines before apply, the rest of
    /// the file does not (the other drop-ins still apply).
    pub stopped: Option<syntax::SyntaxError>,
}

/// A drop-in systemd reads only in part, for warnings: file, line and systemd's reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Partial {
    /// In-root path.
    pub path: String,
    /// 1-based line where systemd stops reading.
    pub line: usize,
    /// systemd's reason.
    pub reason: String,
}

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: systemd applies the lines before and skips the rest of this drop-in",
            self.path, self.line, self.reason
        )
    }
}

/// The drop-ins among `sources` that systemd reads only in part.
pub fn partial(sources: &[Source]) -> Vec<Partial> {
    sources
        .iter()
        .filter_map(|s| {
            s.stopped.as_ref().map(|e| Partial {
                path: s.path.clone(),
                line: e.line,
                reason: e.message.clone(),
            })
        })
        .collect()
}

/// Context of an error in a fragment: systemd cannot load the unit at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotLoad(pub String);

impl std::fmt::Display for CannotLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "systemd cannot load {}", self.0)
    }
}

/// Parse the fragment and applied drop-ins with the newest systemd's rules; see
/// [`parse_sources_with`].
pub fn parse_sources(
    fragment_path: &str,
    fragment: &[u8],
    dropins: &[&DropIn],
) -> Result<Vec<Source>> {
    parse_sources_with(fragment_path, fragment, dropins, syntax::Rules::default())
}

/// Parse the fragment and applied drop-ins as systemd does: a fragment systemd refuses is an
/// error naming the file and line (the unit does not load); a drop-in it refuses part-way
/// applies up to the bad line, and says so in [`Source::stopped`].
pub fn parse_sources_with(
    fragment_path: &str,
    fragment: &[u8],
    dropins: &[&DropIn],
    rules: syntax::Rules,
) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let file = syntax::parse_with(fragment, rules).map_err(|(_, e)| {
        anyhow::Error::new(crate::error::FileError {
            path: fragment_path.to_string(),
            line: Some(e.line),
            message: e.message,
        })
    })?;
    out.push(Source {
        path: fragment_path.to_string(),
        file,
        stopped: None,
    });
    for d in dropins {
        let (file, stopped) = if d.masked {
            (UnitFile::default(), None)
        } else {
            match syntax::parse_with(&d.data, rules) {
                Ok(f) => (f, None),
                Err((f, e)) => (f, Some(e)),
            }
        };
        out.push(Source {
            path: d.path.clone(),
            file,
            stopped,
        });
    }
    Ok(out)
}

/// Parse a discovered unit's files as systemd `major` does (the newest when unknown); a
/// fragment it refuses is "systemd cannot load UNIT: path:line: reason".
pub fn parse_discovered(d: &Discovered, major: Option<u32>) -> Result<Vec<Source>> {
    let applied = applied(&d.dropins);
    let sources = parse_sources_with(
        &d.fragment.path,
        &d.fragment.data,
        &applied,
        syntax::Rules::for_version(major),
    )
    .context(CannotLoad(d.unit.to_string()))?;
    if d.unit.unit_type() == "service" {
        // service_verify(): a service with neither ExecStart=, ExecStop= nor SuccessAction=
        // is refused (LoadState=bad-setting).
        // A list setting is set when a value follows its last empty assignment.
        let has = |sec: &str, key: &str| {
            let mut set = false;
            for a in sources.iter().flat_map(|s| s.file.assignments.iter()) {
                if a.section == sec && a.key == key {
                    set = !a.value.is_empty();
                }
            }
            set
        };
        if !(has("Service", "ExecStart")
            || has("Service", "ExecStop")
            || has("Unit", "SuccessAction"))
        {
            return Err(anyhow::Error::new(crate::error::FileError {
                path: d.fragment.path.clone(),
                line: None,
                message: "the service has no ExecStart=, ExecStop= or SuccessAction=, so systemd refuses it (LoadState=bad-setting)".into(),
            }))
            .context(CannotLoad(d.unit.to_string()));
        }
    }
    Ok(sources)
}

/// Read a file as text, refusing bytes that are not UTF-8 with the file and line they are on
/// (systemd skips comment lines unchecked, so the parser alone does not catch them all).
pub fn text(path: &str, data: &[u8]) -> Result<String> {
    String::from_utf8(data.to_vec()).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let line = syntax::split_lines(&data[..bad])
            .iter()
            .filter(|l| !l.end.is_empty())
            .count()
            + 1;
        anyhow::Error::new(crate::error::FileError {
            path: path.to_string(),
            line: Some(line),
            message: "not valid UTF-8".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(path: &str, order: usize) -> DropIn {
        DropIn {
            path: path.into(),
            rank: 0,
            order,
            masked: false,
            data: Vec::new(),
        }
    }

    #[test]
    fn text_names_the_line_of_the_first_invalid_utf8_byte() {
        assert_eq!(text("/u", b"[Service]\n").unwrap(), "[Service]\n");
        let e = text("/u", b"[Service]\r\n# caf\xe9\r\nMountFlags=slave\r\n").unwrap_err();
        assert_eq!(e.to_string(), "/u:2: not valid UTF-8");
        let e = text("/u", b"\xff").unwrap_err();
        assert_eq!(e.to_string(), "/u:1: not valid UTF-8");
    }

    #[test]
    fn same_basename_in_higher_priority_dir_hides_lower() {
        let all = [
            d("/etc/systemd/system/docker.service.d/10-a.conf", 0),
            d("/usr/lib/systemd/system/docker.service.d/10-a.conf", 1),
        ];
        let a = applied(&all);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].path, "/etc/systemd/system/docker.service.d/10-a.conf");
        assert_eq!(hidden_by(&all, &all[1]).unwrap().path, all[0].path);
    }

    #[test]
    fn survivors_apply_in_lexical_order_regardless_of_directory() {
        let all = [
            d("/etc/systemd/system/docker.service.d/50-bar.conf", 0),
            d("/usr/lib/systemd/system/docker.service.d/99-foo.conf", 1),
            d("/usr/lib/systemd/system/docker.service.d/10-early.conf", 1),
            d("/usr/lib/systemd/system/service.d/Z.conf", 2),
        ];
        let names: Vec<_> = applied(&all)
            .iter()
            .map(|d| d.basename().to_string())
            .collect();
        assert_eq!(
            names,
            ["10-early.conf", "50-bar.conf", "99-foo.conf", "Z.conf"]
        );
    }

    #[test]
    fn hidden_and_backup_files_are_skipped() {
        assert!(hidden_or_backup(".#override.conf3f2a"));
        assert!(hidden_or_backup("x.conf~"));
        assert!(hidden_or_backup("x.conf.dpkg-old"));
        assert!(!hidden_or_backup("override.conf"));
    }

    #[test]
    fn dropin_dirs_follow_systemd_order_names_then_type() {
        let dirs = vec![
            SearchDir {
                path: "/etc/systemd/system".into(),
                rank: 4,
            },
            SearchDir {
                path: "/usr/lib/systemd/system".into(),
                rank: 11,
            },
        ];
        let n = UnitName::parse("foo-bar@x.service").unwrap();
        let got: Vec<_> = dropin_dirs(&dirs, &n, &["alias.service".into()], Some(252))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            got,
            [
                "/etc/systemd/system/foo-bar@x.service.d",
                "/etc/systemd/system/foo-bar@.service.d",
                "/etc/systemd/system/foo-.service.d",
                "/etc/systemd/system/foo-@x.service.d",
                "/etc/systemd/system/foo-@.service.d",
                "/usr/lib/systemd/system/foo-bar@x.service.d",
                "/usr/lib/systemd/system/foo-bar@.service.d",
                "/usr/lib/systemd/system/foo-.service.d",
                "/usr/lib/systemd/system/foo-@x.service.d",
                "/usr/lib/systemd/system/foo-@.service.d",
                "/etc/systemd/system/alias.service.d",
                "/usr/lib/systemd/system/alias.service.d",
                "/etc/systemd/system/service.d",
                "/usr/lib/systemd/system/service.d",
            ]
        );
        let old: Vec<_> = dropin_dirs(&dirs, &n, &[], Some(231))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert!(!old
            .iter()
            .any(|p| p.ends_with("foo-.service.d") || p.ends_with("/service.d")));
    }
}
