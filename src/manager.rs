//! Talks to systemd over D-Bus: reads unit state, reloads, restarts a unit and waits for its job.
//!
//! Everything goes through the system bus (dbus-daemon), never `/run/systemd/private`. zbus
//! runs the socket on its own executor thread; this module waits for replies and signals on
//! the calling thread, so every wait has a deadline.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use zbus::export::futures_core::Stream;
use zbus::proxy;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{DeserializeDict, OwnedObjectPath, OwnedValue};
use zbus::Connection;

const SYSTEMD: &str = "org.freedesktop.systemd1";
/// Where systemd itself looks when `DBUS_SYSTEM_BUS_ADDRESS` is unset (`DEFAULT_SYSTEM_BUS_ADDRESS`).
const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// sd-bus's default method timeout, which systemctl uses for ordinary calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// systemctl's `DAEMON_RELOAD_TIMEOUT_SEC`: a reload reruns generators and may take long.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// systemd's Manager interface, the calls dropfix makes (`org.freedesktop.systemd1(5)`).
#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    /// `LoadUnit(s) -> o`: the unit's object path, loading it from disk if needed.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// `Reload()`: daemon-reload; the reply comes once every unit has been re-read.
    fn reload(&self) -> zbus::Result<()>;
    /// `RestartUnit(ss) -> o`: the queued job's path.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// `Subscribe()`: without a subscriber systemd may not emit job signals.
    fn subscribe(&self) -> zbus::Result<()>;
    /// `ListUnits() -> a(ssssssouso)`.
    fn list_units(&self) -> zbus::Result<Vec<ListUnitsRow>>;
    /// `JobRemoved(uoss)`: a job finished, with its result.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
    /// `Version`, e.g. `252.39-1~deb12u2`.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;
    /// `UnitsLoadTimestamp` (v255+ moves with every daemon-reload; absent on older systemd).
    #[zbus(property(emits_changed_signal = "false"))]
    fn units_load_timestamp(&self) -> zbus::Result<u64>;
    /// `UnitsLoadFinishTimestamp`: when units were last loaded at boot or reload.
    #[zbus(property(emits_changed_signal = "false"))]
    fn units_load_finish_timestamp(&self) -> zbus::Result<u64>;
}

/// `org.freedesktop.DBus.Properties.GetAll` read straight into typed structs: one round trip
/// per interface, as `systemctl show` does, instead of one `Get` per property.
#[proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait TypedProperties {
    /// `GetAll("org.freedesktop.systemd1.Unit")`.
    #[zbus(name = "GetAll")]
    fn unit_props(&self, interface: &str) -> zbus::Result<UnitProps>;
    /// `GetAll("org.freedesktop.systemd1.Service")`.
    #[zbus(name = "GetAll")]
    fn service_props(&self, interface: &str) -> zbus::Result<ServiceProps>;
}

/// One row of `ListUnits`.
#[derive(Debug, Clone, serde::Deserialize, zbus::zvariant::Type)]
pub struct ListUnitsRow {
    name: String,
    _description: String,
    load_state: String,
    active_state: String,
    sub_state: String,
    _following: String,
    path: OwnedObjectPath,
    _job_id: u32,
    _job_type: String,
    _job_path: OwnedObjectPath,
}

/// The Unit interface's properties dropfix reads.
#[derive(Debug, Default, DeserializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", rename_all = "PascalCase")]
struct UnitProps {
    id: Option<String>,
    names: Option<Vec<String>>,
    load_state: Option<String>,
    load_error: Option<(String, String)>,
    active_state: Option<String>,
    sub_state: Option<String>,
    fragment_path: Option<String>,
    drop_in_paths: Option<Vec<String>>,
    need_daemon_reload: Option<bool>,
    active_enter_timestamp: Option<u64>,
}

/// The Service interface's properties dropfix reads.
#[derive(Debug, Default, DeserializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", rename_all = "PascalCase")]
struct ServiceProps {
    mount_flags: Option<u64>,
    #[zvariant(rename = "MainPID")]
    main_pid: Option<u32>,
    result: Option<String>,
    exec_main_start_timestamp: Option<u64>,
}

/// `LoadState` (systemd's `unit_load_state_to_string`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoadState {
    /// `stub`: not loaded yet.
    #[default]
    Stub,
    /// `loaded`.
    Loaded,
    /// `not-found`.
    NotFound,
    /// `bad-setting`.
    BadSetting,
    /// `error`: the fragment could not be read or parsed.
    Error,
    /// `merged`: an alias merged into another unit.
    Merged,
    /// `masked`.
    Masked,
    /// A state this dropfix does not know.
    Other(String),
}

impl LoadState {
    /// From systemd's string.
    pub fn parse(s: &str) -> Self {
        match s {
            "stub" => Self::Stub,
            "loaded" => Self::Loaded,
            "not-found" => Self::NotFound,
            "bad-setting" => Self::BadSetting,
            "error" => Self::Error,
            "merged" => Self::Merged,
            "masked" => Self::Masked,
            o => Self::Other(o.to_string()),
        }
    }
    /// systemd's string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stub => "stub",
            Self::Loaded => "loaded",
            Self::NotFound => "not-found",
            Self::BadSetting => "bad-setting",
            Self::Error => "error",
            Self::Merged => "merged",
            Self::Masked => "masked",
            Self::Other(s) => s,
        }
    }
}

/// `ActiveState` (systemd's `unit_active_state_to_string`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ActiveState {
    /// `active`.
    Active,
    /// `reloading`.
    Reloading,
    /// `inactive`.
    #[default]
    Inactive,
    /// `failed`.
    Failed,
    /// `activating`.
    Activating,
    /// `deactivating`.
    Deactivating,
    /// `maintenance` (v246+).
    Maintenance,
    /// `refreshing` (v254+).
    Refreshing,
    /// A state this dropfix does not know.
    Other(String),
}

impl ActiveState {
    /// From systemd's string.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "reloading" => Self::Reloading,
            "inactive" => Self::Inactive,
            "failed" => Self::Failed,
            "activating" => Self::Activating,
            "deactivating" => Self::Deactivating,
            "maintenance" => Self::Maintenance,
            "refreshing" => Self::Refreshing,
            o => Self::Other(o.to_string()),
        }
    }
    /// systemd's string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Reloading => "reloading",
            Self::Inactive => "inactive",
            Self::Failed => "failed",
            Self::Activating => "activating",
            Self::Deactivating => "deactivating",
            Self::Maintenance => "maintenance",
            Self::Refreshing => "refreshing",
            Self::Other(s) => s,
        }
    }
    /// Running, or on its way there: a restart would stop it.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            Self::Active | Self::Activating | Self::Reloading | Self::Refreshing
        )
    }
}

impl std::fmt::Display for ActiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for LoadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What systemd reports about one unit, read fresh from the bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `Id`: the unit's primary name (an alias given to [`ServiceManager::unit`] resolves here).
    pub id: String,
    /// `Names`: the primary name and all aliases.
    pub names: Vec<String>,
    /// `LoadState`.
    pub load_state: LoadState,
    /// `LoadError` as (D-Bus error name, message), `None` when the unit loaded fine.
    pub load_error: Option<(String, String)>,
    /// `ActiveState`.
    pub active_state: ActiveState,
    /// `SubState`, e.g. `running`, `dead`, `exited`.
    pub sub_state: String,
    /// `FragmentPath`: the unit file systemd loaded (may name `/lib/...` on merged-/usr systems).
    pub fragment_path: String,
    /// `DropInPaths`: the drop-ins systemd applied, in the order it applied them.
    pub drop_in_paths: Vec<String>,
    /// `NeedDaemonReload`: files on disk changed since systemd last loaded the unit.
    pub need_daemon_reload: bool,
    /// `MountFlags` of a service, socket, mount or swap (0, or the MS_PRIVATE/MS_SLAVE/MS_SHARED
    /// bit); `None` for types without it.
    pub mount_flags: Option<u64>,
    /// `Service.MainPID`, 0 if none (always 0 for non-services).
    pub main_pid: u32,
    /// `Service.Result`, e.g. `success`, `exit-code`; empty for non-services.
    pub result: String,
    /// When the unit last became active (`ActiveEnterTimestamp`, µs since the epoch; 0 never).
    pub active_enter_us: u64,
}

impl UnitState {
    /// Running, or on its way there.
    pub fn is_running(&self) -> bool {
        self.active_state.is_running()
    }
}

/// How a job systemd queued for us ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// The job finished with result `done` (the unit may still have stopped since: check its state).
    Done,
    /// Any other job result: `failed`, `dependency`, `timeout`, `canceled`, or one we don't know.
    Failed {
        /// The `JobRemoved` result string.
        result: String,
    },
    /// No `JobRemoved` for the job before the deadline; the job may still be running.
    TimedOut,
    /// The bus connection broke or systemd left the bus while we waited.
    Vanished,
}

impl JobOutcome {
    /// For reports: `done`, the failed result, `timeout`, or `lost`.
    pub fn describe(&self) -> String {
        match self {
            JobOutcome::Done => "done".into(),
            JobOutcome::Failed { result } => result.clone(),
            JobOutcome::TimedOut => "timeout (dropfix stopped waiting)".into(),
            JobOutcome::Vanished => "lost (the bus connection dropped)".into(),
        }
    }
}

/// A unit as `ListUnits` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUnit {
    /// Primary name.
    pub name: String,
    /// `LoadState`.
    pub load_state: LoadState,
    /// `ActiveState`.
    pub active_state: ActiveState,
    /// `SubState`.
    pub sub_state: String,
    /// Object path.
    pub path: String,
}

/// The service manager as dropfix uses it; [`Systemd`] is the real one. Every command gets
/// its manager through this trait, so a recording fake can drive them all in tests.
pub trait ServiceManager {
    /// `Manager.Version`, e.g. `252.39-1~deb12u2`.
    fn version(&mut self) -> Result<String>;
    /// Loads `name` (`LoadUnit`) and reads its properties fresh (`Properties.GetAll`).
    fn unit(&mut self, name: &str) -> Result<UnitState>;
    /// `Manager.Reload` (daemon-reload); returns once systemd has re-read all units.
    fn reload(&mut self) -> Result<()>;
    /// `RestartUnit(name, "replace")` and waits up to `timeout` for the job to finish.
    fn restart(&mut self, name: &str, timeout: Duration) -> Result<JobOutcome>;
    /// Every property of a unit (Unit interface plus its type's), for comparing settings.
    fn unit_properties(&mut self, name: &str) -> Result<HashMap<String, PropValue>>;
    /// Every loaded unit (`ListUnits`).
    fn list_units(&mut self) -> Result<Vec<ListedUnit>> {
        Ok(Vec::new())
    }
    /// `GetAll(iface)` on many unit objects at once; `None` for a unit gone meanwhile.
    fn properties_many(
        &mut self,
        paths: &[String],
        _iface: &str,
    ) -> Result<Vec<Option<HashMap<String, PropValue>>>> {
        Ok(paths.iter().map(|_| None).collect())
    }
    /// When systemd last (re)loaded unit files, µs since the epoch, if this systemd says.
    fn units_loaded_at(&mut self) -> Option<u64> {
        None
    }
}

/// Maps a `JobRemoved` result string the way systemctl does: only `done` is success.
fn job_outcome(result: &str) -> JobOutcome {
    match result {
        "done" => JobOutcome::Done,
        other => JobOutcome::Failed {
            result: other.to_string(),
        },
    }
}

/// A connection to systemd (PID 1) through the system bus.
#[derive(Debug)]
pub struct Systemd {
    conn: Connection,
    address: String,
    subscribed: bool,
}

impl Systemd {
    /// Connects to the system bus at `$DBUS_SYSTEM_BUS_ADDRESS`, or systemd's default socket.
    pub fn connect() -> Result<Self> {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_string());
        Self::connect_address(&address)
    }

    /// Connects to the bus at `address`, a D-Bus address such as `unix:path=/run/dbus/system_bus_socket`.
    pub fn connect_address(address: &str) -> Result<Self> {
        let unreachable = |why: String| {
            anyhow!(
                "cannot reach the system bus at {address} ({why}); for offline work use --root DIR"
            )
        };
        let builder = zbus::connection::Builder::address(address)
            .map_err(|e| anyhow!("invalid D-Bus address {address:?}: {e}"))?;
        let conn = block_on_until(Instant::now() + CALL_TIMEOUT, builder.build())
            .ok_or_else(|| unreachable(format!("no answer in {}s", CALL_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(short_error(&e)))?;
        Ok(Systemd {
            conn,
            address: address.to_string(),
            subscribed: false,
        })
    }

    /// The D-Bus address this connection uses.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits for `fut` up to `timeout`; D-Bus errors become one-line messages.
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        fut: impl Future<Output = zbus::Result<T>>,
    ) -> Result<T> {
        match block_on_until(Instant::now() + timeout, fut) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(self.explain(e)),
            None => Err(anyhow!("no reply to {what} within {}s", timeout.as_secs())),
        }
    }

    /// The Manager object. No property cache: every read asks systemd afresh.
    fn manager(&self) -> Result<ManagerProxy<'static>> {
        let b = ManagerProxy::builder(&self.conn).cache_properties(CacheProperties::No);
        self.wait("a proxy", CALL_TIMEOUT, b.build())
    }

    /// Typed `GetAll` on one unit object.
    fn typed_props(&self, path: &OwnedObjectPath) -> Result<TypedPropertiesProxy<'static>> {
        let b = TypedPropertiesProxy::builder(&self.conn)
            .path(path.clone())
            .map_err(|e| self.explain(e))?
            .cache_properties(CacheProperties::No);
        self.wait("a proxy", CALL_TIMEOUT, b.build())
    }

    /// Turns a zbus error into one line a person can act on.
    fn explain(&self, e: zbus::Error) -> anyhow::Error {
        if let zbus::Error::MethodError(name, detail, _) = &e {
            let detail = detail.as_deref().map(sentence).unwrap_or_default();
            return match name.as_str() {
                "org.freedesktop.DBus.Error.AccessDenied"
                | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
                    anyhow!("permission denied: run as root")
                }
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => anyhow!(
                    "systemd is not on the system bus at {} (is systemd PID 1?)",
                    self.address
                ),
                "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout" => {
                    anyhow!("systemd did not answer in time")
                }
                "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.UnitMasked"
                    if !detail.is_empty() =>
                {
                    anyhow!("{detail}")
                }
                _ if detail.is_empty() => anyhow!("{name}"),
                _ => anyhow!("{detail} ({name})"),
            };
        }
        if is_disconnect(&e) {
            return anyhow!(
                "lost the connection to the system bus at {} ({})",
                self.address,
                short_error(&e)
            );
        }
        anyhow!("{}", short_error(&e))
    }

    /// `Subscribe()` once per connection: without a subscriber systemd may not emit job signals.
    fn subscribe(&mut self, m: &ManagerProxy<'_>) -> Result<()> {
        if self.subscribed {
            return Ok(());
        }
        match block_on_until(Instant::now() + CALL_TIMEOUT, m.subscribe()) {
            Some(Ok(())) => {}
            Some(Err(zbus::Error::MethodError(name, _, _)))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            Some(Err(e)) => return Err(self.explain(e)),
            None => {
                return Err(anyhow!(
                    "no reply to Subscribe within {}s",
                    CALL_TIMEOUT.as_secs()
                ))
            }
        }
        self.subscribed = true;
        Ok(())
    }

    fn restart_inner(&mut self, name: &str, timeout: Duration) -> Result<JobOutcome> {
        let deadline = Instant::now() + timeout;
        let m = self.manager()?;
        let bus = self.wait(
            "a proxy",
            CALL_TIMEOUT,
            zbus::fdo::DBusProxy::new(&self.conn),
        )?;
        // The order is systemctl's: listen first, then ask for the job, so a JobRemoved that
        // arrives before the RestartUnit reply is buffered, not lost.
        let mut owner_changes = self.wait(
            "AddMatch",
            CALL_TIMEOUT,
            bus.receive_name_owner_changed_with_args(&[(0, SYSTEMD)]),
        )?;
        let systemd_name = zbus::names::BusName::try_from(SYSTEMD).map_err(|e| anyhow!("{e}"))?;
        let owner = self
            .wait("GetNameOwner", CALL_TIMEOUT, async {
                Ok(bus.get_name_owner(systemd_name).await?)
            })?
            .to_string();
        let mut removed = self.wait("AddMatch", CALL_TIMEOUT, m.receive_job_removed())?;
        self.subscribe(&m)?;

        let mut call = pin!(m.restart_unit(name, "replace"));
        let mut job: Option<OwnedObjectPath> = None;
        let mut finished: HashMap<OwnedObjectPath, String> = HashMap::new();
        let waited = block_on_until(
            deadline,
            poll_fn(|cx| -> Poll<Result<JobOutcome, zbus::Error>> {
                // systemd leaving the bus (crash, re-exec) ends the wait: its jobs' signals
                // would come from another connection, if at all.
                match Pin::new(&mut owner_changes).poll_next(cx) {
                    Poll::Ready(_) => return Poll::Ready(Ok(JobOutcome::Vanished)),
                    Poll::Pending => {}
                }
                loop {
                    match Pin::new(&mut removed).poll_next(cx) {
                        Poll::Ready(Some(sig)) => {
                            let from = sig.message().header().sender().map(|s| s.to_string());
                            if from.as_deref() != Some(owner.as_str()) {
                                continue; // only PID 1 speaks for systemd's jobs
                            }
                            let Ok(args) = sig.args() else { continue };
                            let path = args.job().clone();
                            if job.as_ref() == Some(&path) {
                                return Poll::Ready(Ok(job_outcome(args.result())));
                            }
                            finished.insert(path, args.result().clone());
                        }
                        Poll::Ready(None) => return Poll::Ready(Ok(JobOutcome::Vanished)),
                        Poll::Pending => break,
                    }
                }
                if job.is_none() {
                    match call.as_mut().poll(cx) {
                        Poll::Ready(Ok(path)) => {
                            if let Some(result) = finished.remove(&path) {
                                return Poll::Ready(Ok(job_outcome(&result)));
                            }
                            job = Some(path);
                        }
                        Poll::Ready(Err(e)) if is_disconnect(&e) => {
                            return Poll::Ready(Ok(JobOutcome::Vanished))
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                Poll::Pending
            }),
        );
        match waited {
            None => Ok(JobOutcome::TimedOut),
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(e)) => Err(self.explain(e)),
        }
    }
}

/// A property read in flight.
type PendingProps<'a> =
    Pin<Box<dyn Future<Output = zbus::fdo::Result<HashMap<String, OwnedValue>>> + 'a>>;

/// A property value reduced to what dropfix reasons about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropValue {
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An unsigned number.
    Num(u64),
    /// An array of strings.
    Strings(Vec<String>),
    /// Any other array, by length.
    List(usize),
    /// Anything else.
    Other,
}

impl From<&OwnedValue> for PropValue {
    fn from(v: &OwnedValue) -> Self {
        use zbus::zvariant::Value;
        match &**v {
            Value::Bool(b) => PropValue::Bool(*b),
            Value::Str(s) => PropValue::Str(s.to_string()),
            Value::U64(n) => PropValue::Num(*n),
            Value::U32(n) => PropValue::Num(u64::from(*n)),
            Value::Array(a) => {
                let strings: Option<Vec<String>> = a
                    .iter()
                    .map(|x| match x {
                        Value::Str(s) => Some(s.to_string()),
                        _ => None,
                    })
                    .collect();
                match strings {
                    Some(v) if !a.is_empty() || a.element_signature() == "s" => {
                        PropValue::Strings(v)
                    }
                    _ => PropValue::List(a.len()),
                }
            }
            _ => PropValue::Other,
        }
    }
}

impl Systemd {
    /// `LoadUnit`: the unit's object path (loading it from disk if needed).
    fn load_unit(&self, m: &ManagerProxy<'_>, name: &str) -> Result<OwnedObjectPath> {
        self.wait("LoadUnit", CALL_TIMEOUT, m.load_unit(name))
    }

    /// Every property of a unit (Unit interface plus its type's, e.g. Service), loading it.
    fn unit_properties_inner(&mut self, name: &str) -> Result<HashMap<String, PropValue>> {
        let m = self.manager()?;
        let path = self
            .load_unit(&m, name)
            .with_context(|| format!("reading unit {name}"))?;
        let ty = name.rsplit_once('.').map_or("", |(_, t)| t);
        let mut cap = ty.to_string();
        if let Some(f) = cap.get_mut(0..1) {
            f.make_ascii_uppercase();
        }
        let mut out = HashMap::new();
        for iface in [UNIT.to_string(), format!("org.freedesktop.systemd1.{cap}")] {
            if let Some(Some(m)) = self.properties_many(&[path.to_string()], &iface)?.pop() {
                out.extend(m);
            }
        }
        Ok(out)
    }
}

const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";

impl ServiceManager for Systemd {
    fn unit_properties(&mut self, name: &str) -> Result<HashMap<String, PropValue>> {
        self.unit_properties_inner(name)
    }

    fn version(&mut self) -> Result<String> {
        let m = self.manager()?;
        self.wait("Get(Version)", CALL_TIMEOUT, m.version())
            .context("reading systemd's version")
    }

    fn unit(&mut self, name: &str) -> Result<UnitState> {
        let ctx = || format!("reading unit {name}");
        let m = self.manager().with_context(ctx)?;
        let path = self.load_unit(&m, name).with_context(ctx)?;
        let props = self.typed_props(&path).with_context(ctx)?;
        let u = self
            .wait("GetAll", CALL_TIMEOUT, props.unit_props(UNIT))
            .with_context(ctx)?;
        let missing = |what: &str| anyhow!("{}: systemd did not report {UNIT}.{what}", ctx());
        let load_error = u.load_error.filter(|(n, _)| !n.is_empty());
        let mut state = UnitState {
            id: u.id.ok_or_else(|| missing("Id"))?,
            names: u.names.unwrap_or_default(),
            load_state: LoadState::parse(&u.load_state.ok_or_else(|| missing("LoadState"))?),
            load_error,
            active_state: ActiveState::parse(
                &u.active_state.ok_or_else(|| missing("ActiveState"))?,
            ),
            sub_state: u.sub_state.unwrap_or_default(),
            fragment_path: u.fragment_path.unwrap_or_default(),
            drop_in_paths: u.drop_in_paths.unwrap_or_default(),
            need_daemon_reload: u.need_daemon_reload.unwrap_or(false),
            mount_flags: None,
            main_pid: 0,
            result: String::new(),
            active_enter_us: u.active_enter_timestamp.unwrap_or(0),
        };
        // MountFlags lives on the interface of every type with an exec context.
        let iface = match state.id.rsplit_once('.').map(|(_, t)| t) {
            Some("service") => Some(SERVICE),
            Some("socket") => Some("org.freedesktop.systemd1.Socket"),
            Some("mount") => Some("org.freedesktop.systemd1.Mount"),
            Some("swap") => Some("org.freedesktop.systemd1.Swap"),
            _ => None,
        };
        if let Some(iface) = iface {
            let s = self
                .wait("GetAll", CALL_TIMEOUT, props.service_props(iface))
                .with_context(ctx)?;
            state.mount_flags =
                Some(s.mount_flags.ok_or_else(|| {
                    anyhow!("{}: systemd did not report {iface}.MountFlags", ctx())
                })?);
            state.main_pid = s.main_pid.unwrap_or(0);
            state.result = s.result.unwrap_or_default();
            if let Some(t) = s.exec_main_start_timestamp.filter(|t| *t > 0) {
                state.active_enter_us = state.active_enter_us.max(t);
            }
        }
        Ok(state)
    }

    fn reload(&mut self) -> Result<()> {
        // The reply comes after systemd has re-read everything, so what follows sees the new units.
        let m = self.manager()?;
        self.wait("Reload", RELOAD_TIMEOUT, m.reload())
            .context("reloading systemd")
    }

    fn restart(&mut self, name: &str, timeout: Duration) -> Result<JobOutcome> {
        self.restart_inner(name, timeout)
            .with_context(|| format!("restarting {name}"))
    }

    fn list_units(&mut self) -> Result<Vec<ListedUnit>> {
        let m = self.manager()?;
        let rows = self
            .wait("ListUnits", CALL_TIMEOUT, m.list_units())
            .context("listing units")?;
        Ok(rows
            .into_iter()
            .map(|r| ListedUnit {
                name: r.name,
                load_state: LoadState::parse(&r.load_state),
                active_state: ActiveState::parse(&r.active_state),
                sub_state: r.sub_state,
                path: r.path.to_string(),
            })
            .collect())
    }

    /// Every call is in flight at once: systemd has no bulk property call, so pipelining the
    /// typed `Properties.GetAll` calls is the fewest round trips the API allows.
    fn properties_many(
        &mut self,
        paths: &[String],
        iface: &str,
    ) -> Result<Vec<Option<HashMap<String, PropValue>>>> {
        let iface_name = zbus::names::InterfaceName::try_from(iface.to_string())
            .map_err(|e| anyhow!("{iface}: {e}"))?;
        let mut proxies = Vec::with_capacity(paths.len());
        for p in paths {
            let b = zbus::fdo::PropertiesProxy::builder(&self.conn)
                .destination(SYSTEMD)
                .and_then(|b| b.path(p.as_str()))
                .map_err(|e| self.explain(e))?
                .cache_properties(CacheProperties::No);
            proxies.push(self.wait("a proxy", CALL_TIMEOUT, b.build())?);
        }
        let mut calls: Vec<Option<PendingProps<'_>>> = proxies
            .iter()
            .map(|p| {
                let f: PendingProps<'_> = Box::pin(p.get_all(iface_name.clone()));
                Some(f)
            })
            .collect();
        let mut results: Vec<Option<zbus::fdo::Result<HashMap<String, OwnedValue>>>> =
            (0..paths.len()).map(|_| None).collect();
        let deadline = Instant::now() + CALL_TIMEOUT + Duration::from_millis(paths.len() as u64);
        let all = poll_fn(|cx| {
            let mut pending = false;
            for (i, slot) in calls.iter_mut().enumerate() {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(r) => {
                            results[i] = Some(r);
                            *slot = None;
                        }
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        if block_on_until(deadline, all).is_none() {
            return Err(anyhow!(
                "systemd did not answer {} property reads in time",
                paths.len()
            ));
        }
        Ok(results
            .into_iter()
            .map(|r| match r {
                Some(Ok(m)) => Some(
                    m.iter()
                        .map(|(k, v)| (k.clone(), PropValue::from(v)))
                        .collect(),
                ),
                // A unit unloaded meanwhile: no properties.
                _ => None,
            })
            .collect())
    }

    /// `UnitsLoadTimestamp` moves with every daemon-reload (newer systemd); the boot-time
    /// `UnitsLoadFinishTimestamp` alone would make every later edit look unloaded, so without
    /// the former there is no answer.
    fn units_loaded_at(&mut self) -> Option<u64> {
        let m = self.manager().ok()?;
        let at = block_on_until(Instant::now() + CALL_TIMEOUT, m.units_load_timestamp())?.ok()?;
        let fin = block_on_until(
            Instant::now() + CALL_TIMEOUT,
            m.units_load_finish_timestamp(),
        )
        .and_then(|r| r.ok())
        .unwrap_or(0);
        Some(at.max(fin))
    }
}

/// The socket is gone (or the peer hung up): nothing more will arrive on this connection.
fn is_disconnect(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::InputOutput(_))
        || matches!(e, zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.Disconnected")
}

/// An error's text without zbus's prefixes or the errno suffix, e.g. "No such file or directory".
fn short_error(e: &zbus::Error) -> String {
    let text = match e {
        zbus::Error::InputOutput(io) => io.to_string(),
        zbus::Error::Connection(io, _address) => io.to_string(),
        other => other.to_string(),
    };
    match text.rsplit_once(" (os error ") {
        Some((head, _)) => head.to_string(),
        None => text,
    }
}

/// "Unit foo.service not found." -> "unit foo.service not found"
fn sentence(s: &str) -> String {
    let s = s.trim().trim_end_matches('.');
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Wakes the thread that is parked in [`block_on_until`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it completes (`Some`) or `deadline` passes (`None`).
///
/// zbus reads the socket on its own executor thread and wakes us, so parking is enough;
/// spurious wake-ups only cause an extra poll.
fn block_on_until<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_done_is_success_and_unknown_results_are_failures() {
        assert_eq!(job_outcome("done"), JobOutcome::Done);
        for r in [
            "failed",
            "dependency",
            "timeout",
            "canceled",
            "skipped",
            "frozen",
            "new-in-v999",
        ] {
            assert_eq!(
                job_outcome(r),
                JobOutcome::Failed {
                    result: r.to_string()
                }
            );
        }
    }

    #[test]
    fn dbus_error_text_becomes_a_lowercase_clause() {
        assert_eq!(
            sentence("Unit foo.service not found."),
            "unit foo.service not found"
        );
        assert_eq!(sentence(""), "");
    }

    #[test]
    fn unreachable_bus_names_the_address_and_offline_mode() {
        let err = Systemd::connect_address("unix:path=/nonexistent/dropfix/bus").unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot reach the system bus at unix:path=/nonexistent/dropfix/bus \
             (No such file or directory); for offline work use --root DIR"
        );
    }

    #[test]
    fn deadline_cuts_a_pending_future_short() {
        let t0 = Instant::now();
        let out = block_on_until(t0 + Duration::from_millis(50), std::future::pending::<()>());
        assert_eq!(out, None);
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }
}
