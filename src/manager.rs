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
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Structure};
use zbus::{Connection, MatchRule, Message, MessageStream};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const DBUS: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";
/// Where systemd itself looks when `DBUS_SYSTEM_BUS_ADDRESS` is unset (`DEFAULT_SYSTEM_BUS_ADDRESS`).
const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// sd-bus's default method timeout, which systemctl uses for ordinary calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// systemctl's `DAEMON_RELOAD_TIMEOUT_SEC`: a reload reruns generators and may take long.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(180);
/// Signals queued per match before zbus stops reading the socket; we drain while waiting.
const SIGNAL_QUEUE: usize = 4096;

/// What systemd reports about one unit, read fresh from the bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `Id`: the unit's primary name (an alias given to [`ServiceManager::unit`] resolves here).
    pub id: String,
    /// `Names`: the primary name and all aliases.
    pub names: Vec<String>,
    /// `LoadState`: `loaded`, `not-found`, `masked`, `bad-setting`, `error`, ...
    pub load_state: String,
    /// `LoadError` as (D-Bus error name, message), `None` when the unit loaded fine.
    pub load_error: Option<(String, String)>,
    /// `ActiveState`: `active`, `inactive`, `failed`, `activating`, ...
    pub active_state: String,
    /// `SubState`, e.g. `running`, `dead`, `exited`.
    pub sub_state: String,
    /// `FragmentPath`: the unit file systemd loaded (may name `/lib/...` on merged-/usr systems).
    pub fragment_path: String,
    /// `DropInPaths`: the drop-ins systemd applied, in the order it applied them.
    pub drop_in_paths: Vec<String>,
    /// `NeedDaemonReload`: files on disk changed since systemd last loaded the unit.
    pub need_daemon_reload: bool,
    /// `Service.MountFlags` (0, or the MS_PRIVATE/MS_SLAVE/MS_SHARED bit); `None` for non-services.
    pub mount_flags: Option<u64>,
    /// `Service.MainPID`, 0 if none (always 0 for non-services).
    pub main_pid: u32,
    /// `Service.Result`, e.g. `success`, `exit-code`; empty for non-services.
    pub result: String,
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

/// The service manager as dropfix uses it; [`Systemd`] is the real one.
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

    /// One method call with a deadline; D-Bus errors become one-line messages.
    fn call<B>(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<Message>
    where
        B: zbus::export::serde::Serialize + zbus::zvariant::DynamicType,
    {
        let call = self
            .conn
            .call_method(Some(dest), path, Some(iface), method, body);
        match block_on_until(Instant::now() + timeout, call) {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(e)) => Err(self.explain(e)),
            None => Err(anyhow!(
                "no reply to {method} within {}s",
                timeout.as_secs()
            )),
        }
    }

    fn get_all(&self, path: &str, iface: &str) -> Result<HashMap<String, OwnedValue>> {
        let reply = self.call(SYSTEMD, path, PROPERTIES, "GetAll", &(iface,), CALL_TIMEOUT)?;
        reply
            .body()
            .deserialize()
            .with_context(|| format!("unexpected reply to GetAll({iface})"))
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
    fn subscribe(&mut self) -> Result<()> {
        if self.subscribed {
            return Ok(());
        }
        let call =
            self.conn
                .call_method(Some(SYSTEMD), MANAGER_PATH, Some(MANAGER), "Subscribe", &());
        match block_on_until(Instant::now() + CALL_TIMEOUT, call) {
            Some(Ok(_)) => {}
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

    /// A queue of the signals matching `rule`, installed on the bus (AddMatch) before returning.
    fn listen(&self, rule: MatchRule<'static>) -> Result<MessageStream> {
        let stream = MessageStream::for_match_rule(rule, &self.conn, Some(SIGNAL_QUEUE));
        match block_on_until(Instant::now() + CALL_TIMEOUT, stream) {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(self.explain(e)),
            None => Err(anyhow!(
                "no reply to AddMatch within {}s",
                CALL_TIMEOUT.as_secs()
            )),
        }
    }

    fn restart_inner(&mut self, name: &str, timeout: Duration) -> Result<JobOutcome> {
        let deadline = Instant::now() + timeout;
        // The order is systemctl's: listen first, then ask for the job, so a JobRemoved that
        // arrives before the RestartUnit reply is buffered, not lost.
        let mut owner_changes = self.listen(name_owner_changed_rule()?)?;
        let reply = self.call(
            DBUS,
            DBUS_PATH,
            DBUS,
            "GetNameOwner",
            &(SYSTEMD,),
            CALL_TIMEOUT,
        )?;
        let owner: String = reply
            .body()
            .deserialize()
            .context("unexpected reply to GetNameOwner")?;
        let mut removed = self.listen(job_removed_rule()?)?;
        self.subscribe()?;

        let args = (name, "replace");
        let mut call = pin!(self.conn.call_method(
            Some(SYSTEMD),
            MANAGER_PATH,
            Some(MANAGER),
            "RestartUnit",
            &args,
        ));
        let mut job: Option<OwnedObjectPath> = None;
        let mut finished: HashMap<OwnedObjectPath, String> = HashMap::new();
        let waited = block_on_until(
            deadline,
            poll_fn(|cx| -> Poll<Result<JobOutcome, zbus::Error>> {
                // systemd leaving the bus (crash, re-exec) ends the wait: its jobs' signals
                // would come from another connection, if at all.
                loop {
                    match Pin::new(&mut owner_changes).poll_next(cx) {
                        Poll::Ready(Some(Ok(msg))) => {
                            if let Ok((n, _old, _new)) =
                                msg.body().deserialize::<(String, String, String)>()
                            {
                                if n == SYSTEMD {
                                    return Poll::Ready(Ok(JobOutcome::Vanished));
                                }
                            }
                        }
                        Poll::Ready(Some(Err(_)) | None) => {
                            return Poll::Ready(Ok(JobOutcome::Vanished))
                        }
                        Poll::Pending => break,
                    }
                }
                loop {
                    match Pin::new(&mut removed).poll_next(cx) {
                        Poll::Ready(Some(Ok(msg))) => {
                            if msg.header().sender().map(|s| s.as_str()) != Some(owner.as_str()) {
                                continue; // only PID 1 speaks for systemd's jobs
                            }
                            let Ok((_id, path, _unit, result)) =
                                msg.body()
                                    .deserialize::<(u32, OwnedObjectPath, String, String)>()
                            else {
                                continue;
                            };
                            if job.as_ref() == Some(&path) {
                                return Poll::Ready(Ok(job_outcome(&result)));
                            }
                            finished.insert(path, result);
                        }
                        Poll::Ready(Some(Err(_)) | None) => {
                            return Poll::Ready(Ok(JobOutcome::Vanished))
                        }
                        Poll::Pending => break,
                    }
                }
                if job.is_none() {
                    match call.as_mut().poll(cx) {
                        Poll::Ready(Ok(reply)) => {
                            let path: OwnedObjectPath = reply.body().deserialize()?;
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

/// A method call in flight.
type PendingCall<'a> = Pin<Box<dyn Future<Output = zbus::Result<Message>> + 'a>>;

/// A unit as `ListUnits` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUnit {
    /// Primary name.
    pub name: String,
    /// `LoadState`.
    pub load_state: String,
    /// `ActiveState`.
    pub active_state: String,
    /// `SubState`.
    pub sub_state: String,
    /// Object path.
    pub path: String,
}

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
    /// Every loaded unit (`ListUnits`): one round trip.
    pub fn list_units(&mut self) -> Result<Vec<ListedUnit>> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            OwnedObjectPath,
            u32,
            String,
            OwnedObjectPath,
        );
        let reply = self
            .call(
                SYSTEMD,
                MANAGER_PATH,
                MANAGER,
                "ListUnits",
                &(),
                CALL_TIMEOUT,
            )
            .context("listing units")?;
        let rows: Vec<Row> = reply
            .body()
            .deserialize()
            .context("unexpected reply to ListUnits")?;
        Ok(rows
            .into_iter()
            .map(|r| ListedUnit {
                name: r.0,
                load_state: r.2,
                active_state: r.3,
                sub_state: r.4,
                path: r.6.to_string(),
            })
            .collect())
    }

    /// `GetAll(iface)` on many objects with every call in flight at once (systemd has no bulk
    /// property call, so pipelining is the fewest round trips the API allows).
    pub fn properties_many(
        &mut self,
        paths: &[String],
        iface: &str,
    ) -> Result<Vec<Option<HashMap<String, PropValue>>>> {
        let body = (iface,);
        let mut calls: Vec<Option<PendingCall<'_>>> = paths
            .iter()
            .map(|p| {
                let f: PendingCall<'_> = Box::pin(self.conn.call_method(
                    Some(SYSTEMD),
                    p.as_str(),
                    Some(PROPERTIES),
                    "GetAll",
                    &body,
                ));
                Some(f)
            })
            .collect();
        let mut results: Vec<Option<zbus::Result<Message>>> =
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
        let mut out = Vec::with_capacity(paths.len());
        for r in results {
            let map = match r {
                Some(Ok(m)) => m
                    .body()
                    .deserialize::<HashMap<String, OwnedValue>>()
                    .ok()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), PropValue::from(v)))
                            .collect()
                    }),
                // A unit unloaded meanwhile: no properties.
                _ => None,
            };
            out.push(map);
        }
        Ok(out)
    }

    /// `LoadUnit`: the unit's object path (loading it from disk if needed).
    fn load_unit(&self, name: &str) -> Result<OwnedObjectPath> {
        let reply = self.call(
            SYSTEMD,
            MANAGER_PATH,
            MANAGER,
            "LoadUnit",
            &(name,),
            CALL_TIMEOUT,
        )?;
        reply
            .body()
            .deserialize()
            .context("unexpected reply to LoadUnit")
    }

    /// Every property of a unit (Unit interface plus its type's, e.g. Service), loading it.
    fn unit_properties_inner(&mut self, name: &str) -> Result<HashMap<String, PropValue>> {
        let path = self
            .load_unit(name)
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

    /// A manager property of type t (timestamps), None when this systemd lacks it.
    pub fn manager_u64(&mut self, name: &str) -> Option<u64> {
        let reply = self
            .call(
                SYSTEMD,
                MANAGER_PATH,
                PROPERTIES,
                "Get",
                &(MANAGER, name),
                CALL_TIMEOUT,
            )
            .ok()?;
        let v: OwnedValue = reply.body().deserialize().ok()?;
        u64::try_from(v).ok()
    }
}

impl ServiceManager for Systemd {
    fn unit_properties(&mut self, name: &str) -> Result<HashMap<String, PropValue>> {
        self.unit_properties_inner(name)
    }

    fn version(&mut self) -> Result<String> {
        let reply = self
            .call(
                SYSTEMD,
                MANAGER_PATH,
                PROPERTIES,
                "Get",
                &(MANAGER, "Version"),
                CALL_TIMEOUT,
            )
            .context("reading systemd's version")?;
        let value: OwnedValue = reply
            .body()
            .deserialize()
            .context("reading systemd's version: unexpected reply")?;
        String::try_from(value).map_err(|e| anyhow!("reading systemd's version: {e}"))
    }

    fn unit(&mut self, name: &str) -> Result<UnitState> {
        let ctx = || format!("reading unit {name}");
        let path = self.load_unit(name).with_context(ctx)?;
        let mut unit = Props::new(self.get_all(path.as_str(), UNIT).with_context(ctx)?, UNIT);
        let (load_error_name, load_error_message): (String, String) = unit
            .get::<Structure<'static>>("LoadError")
            .and_then(|s| <(String, String)>::try_from(s).map_err(|e| anyhow!("LoadError: {e}")))
            .with_context(ctx)?;
        let mut state = UnitState {
            id: unit.get("Id").with_context(ctx)?,
            names: unit.get("Names").with_context(ctx)?,
            load_state: unit.get("LoadState").with_context(ctx)?,
            load_error: (!load_error_name.is_empty())
                .then_some((load_error_name, load_error_message)),
            active_state: unit.get("ActiveState").with_context(ctx)?,
            sub_state: unit.get("SubState").with_context(ctx)?,
            fragment_path: unit.get("FragmentPath").with_context(ctx)?,
            drop_in_paths: unit.get("DropInPaths").with_context(ctx)?,
            need_daemon_reload: unit.get("NeedDaemonReload").with_context(ctx)?,
            mount_flags: None,
            main_pid: 0,
            result: String::new(),
        };
        if state.id.ends_with(".service") {
            let mut service = Props::new(
                self.get_all(path.as_str(), SERVICE).with_context(ctx)?,
                SERVICE,
            );
            state.mount_flags = Some(service.get("MountFlags").with_context(ctx)?);
            state.main_pid = service.get("MainPID").with_context(ctx)?;
            state.result = service.get("Result").with_context(ctx)?;
        }
        Ok(state)
    }

    fn reload(&mut self) -> Result<()> {
        // The reply comes after systemd has re-read everything, so what follows sees the new units.
        self.call(
            SYSTEMD,
            MANAGER_PATH,
            MANAGER,
            "Reload",
            &(),
            RELOAD_TIMEOUT,
        )
        .context("reloading systemd")?;
        Ok(())
    }

    fn restart(&mut self, name: &str, timeout: Duration) -> Result<JobOutcome> {
        self.restart_inner(name, timeout)
            .with_context(|| format!("restarting {name}"))
    }
}

/// Properties of one interface from `GetAll`, taken out by name and type.
struct Props {
    map: HashMap<String, OwnedValue>,
    iface: &'static str,
}

impl Props {
    fn new(map: HashMap<String, OwnedValue>, iface: &'static str) -> Self {
        Props { map, iface }
    }

    fn get<T>(&mut self, key: &str) -> Result<T>
    where
        T: TryFrom<OwnedValue>,
        T::Error: std::fmt::Display,
    {
        let iface = self.iface;
        let value = self
            .map
            .remove(key)
            .ok_or_else(|| anyhow!("systemd did not report {iface}.{key}"))?;
        T::try_from(value).map_err(|e| anyhow!("{iface}.{key} has an unexpected type: {e}"))
    }
}

fn job_removed_rule() -> Result<MatchRule<'static>> {
    Ok(MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(SYSTEMD)?
        .path(MANAGER_PATH)?
        .interface(MANAGER)?
        .member("JobRemoved")?
        .build())
}

fn name_owner_changed_rule() -> Result<MatchRule<'static>> {
    Ok(MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(DBUS)?
        .path(DBUS_PATH)?
        .interface(DBUS)?
        .member("NameOwnerChanged")?
        .add_arg(SYSTEMD)?
        .build())
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
